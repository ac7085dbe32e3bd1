"""The NCCL environment of a replica spanning EFA nodes: the aws-ofi-nccl plugin found on the node, the backend's
variables (sources in runtime/nccl_environment.py)."""

from __future__ import annotations

from pathlib import Path

from runtime.nccl_environment import NcclEnvironment, find_ofi_plugin


def test_the_plugin_is_found_by_either_name_and_its_directory_goes_on_the_library_path(tmp_path: Path) -> None:
    ubuntu, amazon = tmp_path / "lib" / "x86_64-linux-gnu", tmp_path / "lib64"
    ubuntu.mkdir(parents=True)
    amazon.mkdir()
    (amazon / "libnccl-net-ofi.so").touch()
    assert find_ofi_plugin([str(ubuntu), str(amazon)]) == amazon / "libnccl-net-ofi.so"
    (ubuntu / "libnccl-net.so").touch()
    plugin = find_ofi_plugin([str(ubuntu), str(amazon)])
    assert plugin == ubuntu / "libnccl-net.so"
    nccl = NcclEnvironment.resolve("allgather_reducescatter", find_plugin=lambda: plugin)
    assert nccl.env == {"NCCL_NVLS_ENABLE": "0", "NCCL_NET_PLUGIN": str(plugin)}
    assert nccl.library_dirs == [str(ubuntu)]


def test_deepep_v2_adds_the_gin_variables() -> None:
    nccl = NcclEnvironment.resolve("deepep_v2", find_plugin=lambda: Path("/opt/amazon/ofi-nccl/lib/libnccl-net.so"))
    assert {k: nccl.env[k] for k in ("NCCL_GIN_ENABLE", "NCCL_GIN_TYPE", "OFI_NCCL_GIN_GDAKI", "DEEP_EP_BACKEND")} == {
        "NCCL_GIN_ENABLE": "1",
        "NCCL_GIN_TYPE": "2",
        "OFI_NCCL_GIN_GDAKI": "0",
        "DEEP_EP_BACKEND": "nccl",
    }


def test_a_missing_plugin_is_said_and_nothing_points_nccl_at_it() -> None:
    nccl = NcclEnvironment.resolve(None, find_plugin=lambda: None)
    assert "NCCL_NET_PLUGIN" not in nccl.env and nccl.library_dirs == []
    assert any("fall back to TCP sockets" in reason for reason in nccl.reasons)
