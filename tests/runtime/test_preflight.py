from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.nixl_loopback import LoopbackResult, NixlUnavailable
from runtime.preflight import Preflight
from tests.support.runtime_inputs import fake_node, serving


class FakeLoopback:
    def __init__(self, backend: str, plugins: list[str] | None = None, broken: bool = False) -> None:
        self.backend = backend
        self._plugins = ["UCX", "LIBFABRIC"] if plugins is None else plugins
        self.broken = broken

    def plugins(self) -> list[str]:
        if self.broken:
            raise NixlUnavailable("NIXL is not importable: No module named 'nixl'")
        return self._plugins

    def measure(self) -> LoopbackResult:
        return LoopbackResult(backend=self.backend, bytes=64 * 1024**2, nixl_gbps=4.8, memcpy_gbps=5.4)


def preflight(tmp_path: Path, efa: int, gpus: int, hugepages: int = 0, **kwargs: Any) -> Preflight:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       2113929216 kB\nHugePages_Total:    {hugepages}\nHugepagesize:       2048 kB\n")
    model = tmp_path / "model"
    model.mkdir()
    config = serving(
        model={"source": str(model), "served_name": "m"}, decode={"tensor_parallel": 8}, prefill={"tensor_parallel": 8}
    )
    return Preflight(
        config, "decode", probe=fake_node(tmp_path, efa=efa, gpus=gpus), meminfo=meminfo, shm=tmp_path, **kwargs
    )


def statuses(report_json: str) -> dict[str, str]:
    return {check["name"]: check["status"] for check in json.loads(report_json)["checks"]}


def test_a_fully_wired_p5_passes(tmp_path: Path) -> None:
    report = preflight(tmp_path, efa=32, gpus=8, hugepages=1024, loopback=FakeLoopback).run()
    found = statuses(report.to_json())
    assert {name: found[name] for name in ("gpus", "efa", "hugepages", "nixl", "nixl_transfer", "model")} == {
        "gpus": "pass",
        "efa": "pass",
        "hugepages": "pass",
        "nixl": "pass",
        "nixl_transfer": "pass",
        "model": "pass",
    }
    transfer = next(check for check in report.checks if check.name == "nixl_transfer")
    assert "over LIBFABRIC: 4.80 GB/s (memcpy 5.40 GB/s)" in transfer.reason


def test_cpu_node_reports_gpus_and_efa_absent_and_fails(tmp_path: Path) -> None:
    report = preflight(tmp_path, efa=0, gpus=0, loopback=FakeLoopback).run()
    checks = {check.name: check for check in report.checks}
    assert checks["gpus"].status == "fail" and "no GPU present (CPU platform)" in checks["gpus"].reason
    assert checks["efa"].status == "warn" and "no EFA device present (p5.48xlarge has 32)" in checks["efa"].reason
    assert "over UCX" in checks["nixl_transfer"].reason
    assert not report.passed
    assert report.to_text().splitlines()[-1] == "result: FAIL"


def test_partial_efa_and_missing_hugepages_warn(tmp_path: Path) -> None:
    report = preflight(tmp_path, efa=2, gpus=8, loopback=FakeLoopback).run()
    checks = {check.name: check for check in report.checks}
    assert checks["efa"].status == "warn" and "2 of the 32 EFA interfaces" in checks["efa"].reason
    assert checks["hugepages"].status == "warn"
    assert report.passed


def test_missing_nixl_or_plugin_fails(tmp_path: Path) -> None:
    report = preflight(tmp_path, efa=32, gpus=8, loopback=lambda backend: FakeLoopback(backend, broken=True)).run()
    assert statuses(report.to_json())["nixl"] == "fail"
    (tmp_path / "again").mkdir()
    report = preflight(
        tmp_path / "again", efa=32, gpus=8, loopback=lambda backend: FakeLoopback(backend, plugins=["UCX"])
    ).run()
    nixl = next(check for check in report.checks if check.name == "nixl")
    assert nixl.status == "fail" and "NIXL has no LIBFABRIC plugin; it has UCX" in nixl.reason


def test_missing_model_fails(tmp_path: Path) -> None:
    check = preflight(tmp_path, efa=32, gpus=8, loopback=FakeLoopback)
    (tmp_path / "model").rmdir()
    model = next(c for c in check.run().checks if c.name == "model")
    assert model.status == "fail" and "no such path on this node" in model.reason
