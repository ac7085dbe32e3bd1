from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.nccl_network import NcclNetwork
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


# NCCL's INFO lines as recorded on p5en with aws-ofi-nccl (NVIDIA/nccl issue #1597) and after a fall-back to sockets.
NCCL_ON_EFA = "[0] NCCL INFO Using network Libfabric\n[0] NCCL INFO NET/OFI Selected Provider is efa (found 32 nics)\n"
NCCL_ON_SOCKETS = "[0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so.\n[0] NCCL INFO Using network Socket\n"


def two_node_preflight(
    tmp_path: Path, nccl_log: str, backend: str, seen: dict[str, str], gdrdrv: bool = False
) -> Preflight:
    tmp_path.mkdir(exist_ok=True)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("HugePages_Total:    1024\nHugepagesize:       2048 kB\n")
    model = tmp_path / "model"
    model.mkdir()
    two_nodes = {"nodes_per_replica": 2, "data_parallel_local": 8, "data_parallel": 16, "expert_parallel": True}
    config = serving(model={"source": str(model), "served_name": "m"}, decode={**two_nodes, "all2all_backend": backend})

    def probe(env: Mapping[str, str]) -> NcclNetwork:
        seen.update(env)
        return NcclNetwork.from_log(nccl_log.splitlines())

    fakes: dict[str, Any] = {"loopback": FakeLoopback}  # duck-typed like the other preflight tests' fakes
    node = fake_node(tmp_path, efa=32, gpus=8)
    if gdrdrv:
        (node.dev / "gdrdrv").touch()
    return Preflight(
        config,
        "decode",
        probe=node,
        meminfo=meminfo,
        shm=tmp_path,
        **fakes,
        nccl_probe=probe,
        find_ofi_plugin=lambda: Path("/opt/amazon/ofi-nccl/lib/libnccl-net.so"),
    )


def test_a_group_whose_nccl_falls_back_to_sockets_on_efa_fails(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    report = two_node_preflight(tmp_path, NCCL_ON_SOCKETS, "allgather_reducescatter", seen).run()
    check = next(check for check in report.checks if check.name == "nccl_network")
    assert check.status == "fail" and not report.passed
    assert "NCCL chose Socket instead of Libfabric on an EFA node (/opt/amazon/ofi-nccl/lib/libnccl-net.so)" in (
        check.reason
    )
    assert seen["NCCL_NET_PLUGIN"] == "/opt/amazon/ofi-nccl/lib/libnccl-net.so"


def test_a_group_whose_nccl_uses_libfabric_passes_and_deepep_v2_needs_gdrdrv(tmp_path: Path) -> None:
    report = two_node_preflight(tmp_path, NCCL_ON_EFA, "deepep_v2", {}).run()
    found = {check.name: check for check in report.checks}
    assert found["nccl_network"].status == "pass"
    assert "NCCL uses Libfabric (provider efa)" in found["nccl_network"].reason
    assert found["gdrdrv"].status == "fail" and "gdrdrv (No such file or directory)" in found["gdrdrv"].reason
    again = two_node_preflight(tmp_path / "with-gdrdrv", NCCL_ON_EFA, "deepep_v2", {}, gdrdrv=True).run()
    assert statuses(again.to_json())["gdrdrv"] == "pass"
