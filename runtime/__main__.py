"""``python -m runtime {prefill|decode|router|preflight}``: the container's entry point."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydantic import ValidationError

from runtime import json_log
from runtime.config import CONFIG_ENV, explain, load_serving
from runtime.engine_check import EngineVersionError, EngineVersions
from runtime.host_probe import HostProbe, HostProbeError
from runtime.json_log import EventLog
from runtime.kv_transfer import KvTransferPlanError
from runtime.model_fetch import ModelFetch, ModelFetchError
from runtime.worker import WORKERS, LaunchError

log = EventLog("runtime")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="pdstack runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    for role in ("prefill", "decode"):
        worker = commands.add_parser(role, help=f"configure and exec the vLLM {role} worker")
        worker.add_argument("--config", help=f"serving configuration file (default: ${CONFIG_ENV})")
        worker.add_argument("--dry-run", action="store_true", help="print argv, env and host as JSON and exit")
    router = commands.add_parser("router", help="serve the OpenAI API and route P/D with KV-cache awareness")
    router.add_argument("--config", help=f"serving configuration file (default: ${CONFIG_ENV})")
    preflight = commands.add_parser("preflight", help="check this node against the configuration")
    preflight.add_argument("--config", help=f"serving configuration file (default: ${CONFIG_ENV})")
    preflight.add_argument("--role", choices=("prefill", "decode"), default="decode")
    preflight.add_argument("--json", action="store_true", help="print the checks as one JSON document")
    return parser


def _run_worker(args: argparse.Namespace) -> int:
    serving = load_serving(args.config)
    host = HostProbe().probe()
    fetch = ModelFetch(serving.model)
    if args.dry_run:
        launch = WORKERS[args.command](serving, host, fetch.local_path(), os.environ).launch()
        json.dump(launch.dry_run(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    # Before the model download: an engine the runtime was not tested with is refused at once.
    engine = EngineVersions.installed()
    engine_reasons = engine.check(serving.engine.allow_untested)
    worker = WORKERS[args.command](serving, host, fetch.ensure(), os.environ)
    launch = worker.launch()
    worker.exec(launch.model_copy(update={"reasons": [*engine_reasons, *launch.reasons]}), engine)
    return 1  # not reached: exec replaced the process


def _run_preflight(args: argparse.Namespace) -> int:
    from runtime.preflight import Preflight

    serving = load_serving(args.config)
    with _stdout_to_stderr():
        report = Preflight(serving, args.role).run()
    sys.stdout.write(report.to_json() if args.json else report.to_text())
    sys.stdout.write("\n")
    return 0 if report.passed else 1


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout, by Python or by native libraries (NIXL logs there), to stderr, so that
    stdout carries the report alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    json_log.configure()
    args = _parser().parse_args(argv)
    try:
        if args.command == "preflight":
            return _run_preflight(args)
        if args.command == "router":
            from runtime.router.server import run

            return run(load_serving(args.config))
        return _run_worker(args)
    except ValidationError as error:
        problems = explain(error)
        log.error("invalid_configuration", problems=problems)
        return 2
    except (
        LaunchError,
        KvTransferPlanError,
        ModelFetchError,
        HostProbeError,
        EngineVersionError,
        FileNotFoundError,
    ) as error:
        log.error("cannot_start", command=args.command, reason=str(error))
        return 2


if __name__ == "__main__":
    sys.exit(main())
