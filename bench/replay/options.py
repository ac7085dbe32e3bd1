"""The trace options ``python -m bench.replay`` and ``python -m bench.plan`` share, and the trace window they
select."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.replay.trace import MOONCAKE_BLOCK_SIZE, TraceColumns, TraceFormatError, TraceIndex, Window, index_trace

GUIDELLM_COLUMNS = {
    "timestamp": "timestamp_column",
    "input_length": "prompt_tokens_column",
    "output_length": "output_tokens_column",
    "hash_ids": "hash_ids_column",
}


def trace_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: bool = True) -> None:
    """The trace options bench.replay and bench.plan share (guidellm's names for the same settings in brackets)."""
    parser.add_argument("--trace", type=Path, required=required, help="a Mooncake-format JSON-lines trace")
    parser.add_argument(
        "--block-size",
        type=int,
        default=MOONCAKE_BLOCK_SIZE,
        help="tokens per hash id (guidellm hash_id_block_size; Mooncake's 512)",
    )
    parser.add_argument("--window", default="", help="START:END trace seconds to keep (either side may be empty)")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N requests (of the window)")
    parser.add_argument("--speedup", type=float, default=1.0, help="compress the arrival gaps (2: twice the rate)")
    for field, default in vars(TraceColumns()).items():
        parser.add_argument(
            f"--{field.replace('_', '-')}-column",
            default=default,
            help=f"the field holding {field} (guidellm {GUIDELLM_COLUMNS[field]})",
        )
    parser.add_argument("--model", default="llama-3.1-8b", help="the served model (bench/fake_engine/hardware.py)")
    parser.add_argument(
        "--ttft-ms",
        type=float,
        default=3000.0,
        help="TTFT objective, modelled ms (an assumption: 3 s for this trace's 15k-token mean prompt)",
    )
    parser.add_argument("--tpot-ms", type=float, default=50.0, help="TPOT objective, modelled ms")


def load(args: argparse.Namespace) -> TraceIndex:
    """The trace's requests inside the window; TraceFormatError on any bad line or an empty window."""
    window = Window.parse(args.window, args.limit)
    columns = TraceColumns(
        args.timestamp_column, args.input_length_column, args.output_length_column, args.hash_ids_column
    )
    index = index_trace(args.trace, window, args.block_size, columns)
    if not len(index):
        raise TraceFormatError(
            f"{args.trace}: no request inside window {args.window or 'all'} ({index.read} requests in the file)"
        )
    return index
