"""Run a short script in the pinned vLLM's venv that parses a worker's argv with vLLM's own argument parser and
config classes, and return what it printed as JSON. Nothing starts an engine: this is how the end-to-end tier proves
commands that this machine cannot run (EFA, expert parallel, the host KV tier) are ones the pinned vLLM accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from testbed.cpu_pair import REPO

# The imports every parse script starts with: vLLM's CLI parser and the engine arguments it fills (paths as of the
# pinned vLLM; a moved module fails the script with an ImportError, which the caller's assertion shows).
PARSER_PREAMBLE = """
import json, sys
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
argv = json.loads(sys.argv[1])
args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv[2:])
engine = AsyncEngineArgs.from_cli_args(args)
"""


def parse_in_vllm(vllm_python: Path, script: str, argv: list[str]) -> Any:
    """Run ``PARSER_PREAMBLE`` + ``script`` (which prints one JSON line last, from ``args``/``engine``) with ``argv``
    (the worker's whole command: its first two items, the executable and vLLM's subcommand, are skipped)."""
    result = subprocess.run(
        [str(vllm_python), "-c", PARSER_PREAMBLE + script, json.dumps(argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
