"""Reads a trace in the Mooncake format (kvcache-ai/Mooncake ``FAST25-release/traces``): JSON lines, one request each,
``{"timestamp": ms from the trace's start, "input_length": prompt tokens, "output_length": output tokens,
"hash_ids": [one id per block of ``block_size`` prompt tokens; equal ids = equal block content]}``.

What it accepts is what guidellm's ``--data kind=mooncake`` accepts (vllm-project/guidellm,
``src/guidellm/data/deserializers/trace_mooncake.py`` and ``trace_common.py``, read at the stored snapshot of
2026-08-07, after v0.7.3; the 0.8.1 release itself was not in the snapshot: check its changelog before relying on an
edge case), so one file replays on the simulator here and against a deployed endpoint with guidellm:
- the column names default to ``timestamp``, ``input_length``, ``output_length``, ``hash_ids`` and can be renamed;
- token counts are non-negative integers, hash ids non-negative integers, the timestamp a number;
- ``len(hash_ids) == ceil(input_length / block_size)``, block size 512 by default (Mooncake's paper);
- rows need not be sorted: the replay orders them by timestamp (guidellm sorts them too); times are relative to the
  earliest request kept.
Other fields on a line are ignored. guidellm also reads JSON, CSV and Parquet; this reader reads JSON lines only.

The file is streamed, never held: a first pass validates every line and keeps, for the requests inside the window,
only their timestamp, byte offset and line number (24 bytes a request); the second pass reads them back one at a time in
time order. A format error names the file, the line and the field.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOONCAKE_BLOCK_SIZE = 512


class TraceFormatError(ValueError):
    """A line the format does not allow; the message names the line number and the field."""


@dataclass(frozen=True)
class TraceColumns:
    timestamp: str = "timestamp"
    input_length: str = "input_length"
    output_length: str = "output_length"
    hash_ids: str = "hash_ids"


@dataclass(frozen=True)
class TraceRequest:
    line: int
    """1-based line number in the file."""
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True)
class Window:
    """Keep requests with ``start_s <= timestamp / 1000 < end_s`` (trace seconds, absolute) and then the first
    ``limit`` of those in time order."""

    start_s: float = 0.0
    end_s: float = math.inf
    limit: int | None = None

    @classmethod
    def parse(cls, text: str | None, limit: int | None = None) -> Window:
        """``START:END`` seconds; either side may be empty (``:120``, ``300:``)."""
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        if not text:
            return cls(limit=limit)
        start, sep, end = text.partition(":")
        if not sep:
            raise ValueError(f"--window takes START:END in seconds, got {text!r}")
        try:
            window = cls(float(start) if start else 0.0, float(end) if end else math.inf, limit)
        except ValueError:
            raise ValueError(f"--window takes START:END in seconds, got {text!r}") from None
        if window.end_s <= window.start_s:
            raise ValueError(f"--window END must be after START, got {text!r}")
        return window

    def holds(self, timestamp_ms: float) -> bool:
        return self.start_s <= timestamp_ms / 1000.0 < self.end_s


def _integer(value: object, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceFormatError(f"{where}: field {field!r} must be an integer, got {value!r}")
    if value < 0:
        raise TraceFormatError(f"{where}: field {field!r} must be non-negative, got {value}")
    return value


def parse_line(
    text: str,
    number: int,
    block_size: int = MOONCAKE_BLOCK_SIZE,
    columns: TraceColumns = TraceColumns(),
    source: str = "trace",
) -> TraceRequest:
    """One line of the trace, validated; ``number`` is its 1-based line number (for the messages)."""
    where = f"{source} line {number}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise TraceFormatError(f"{where}: not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise TraceFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in (columns.timestamp, columns.input_length, columns.output_length, columns.hash_ids):
        if field not in record:
            raise TraceFormatError(f"{where}: field {field!r} is missing")
    timestamp = record[columns.timestamp]
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise TraceFormatError(
            f"{where}: field {columns.timestamp!r} must be a number of milliseconds, got {timestamp!r}"
        )
    input_length = _integer(record[columns.input_length], where, columns.input_length)
    output_length = _integer(record[columns.output_length], where, columns.output_length)
    ids = record[columns.hash_ids]
    if not isinstance(ids, list):
        raise TraceFormatError(f"{where}: field {columns.hash_ids!r} must be a list of integers, got {ids!r}")
    for index, value in enumerate(ids):
        _integer(value, where, f"{columns.hash_ids}[{index}]")
    blocks = -(-input_length // block_size)
    if len(ids) != blocks:
        raise TraceFormatError(
            f"{where}: field {columns.hash_ids!r} has {len(ids)} ids but "
            f"{columns.input_length!r} {input_length} needs {blocks} blocks of {block_size} tokens"
        )
    return TraceRequest(number, float(timestamp), input_length, output_length, tuple(ids))


@dataclass(frozen=True)
class TraceIndex:
    """The requests a replay keeps: where each starts in the file, in time order."""

    path: Path
    block_size: int
    columns: TraceColumns
    timestamps_ms: array[float]
    offsets: array[int]
    lines: array[int]
    read: int
    """Lines read (the requests in the file)."""

    def __len__(self) -> int:
        return len(self.offsets)

    def export(self, out: Path) -> int:
        """Write the kept lines, unchanged and in time order, to ``out`` (a trace guidellm replays as the window);
        the number of lines written."""
        with self.path.open("rb") as handle, out.open("wb") as sink:
            for offset in self.offsets:
                handle.seek(offset)
                sink.write(handle.readline().rstrip(b"\r\n") + b"\n")
        return len(self.offsets)

    def __iter__(self) -> Iterator[TraceRequest]:
        with self.path.open("rb") as handle:
            for offset, line in zip(self.offsets, self.lines, strict=True):
                handle.seek(offset)
                yield parse_line(handle.readline().decode(), line, self.block_size, self.columns, str(self.path))


def index_trace(
    path: Path, window: Window = Window(), block_size: int = MOONCAKE_BLOCK_SIZE, columns: TraceColumns = TraceColumns()
) -> TraceIndex:
    """Validate every line of ``path`` (a format error anywhere stops the replay before it starts) and index the
    requests inside ``window``. Blank lines are skipped."""
    if block_size < 1:
        raise ValueError(f"block size must be positive, got {block_size}")
    stamps, offsets, lines = array("d"), array("q"), array("q")
    ordered = True
    read = 0
    with path.open("rb") as handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            here, offset = offset, offset + len(raw)
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            request = parse_line(text, number, block_size, columns, str(path))
            read += 1
            if window.holds(request.timestamp_ms):
                if stamps and request.timestamp_ms < stamps[-1]:
                    ordered = False
                stamps.append(request.timestamp_ms)
                offsets.append(here)
                lines.append(number)
    if not ordered:  # stable: equal timestamps keep the file's order
        order = sorted(range(len(stamps)), key=stamps.__getitem__)
        stamps = array("d", (stamps[i] for i in order))
        offsets = array("q", (offsets[i] for i in order))
        lines = array("q", (lines[i] for i in order))
    if window.limit is not None:
        del stamps[window.limit :], offsets[window.limit :], lines[window.limit :]
    return TraceIndex(path, block_size, columns, stamps, offsets, lines, read)
