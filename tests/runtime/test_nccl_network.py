"""NCCL's network choice read from its own log: lines as NCCL and aws-ofi-nccl print them (recorded in NVIDIA/nccl
issue #1597 on p5en, aws-ofi-nccl issue #24 for the older plugin name, uccl-project/uccl issue #734 for the socket
fall-back)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from runtime.nccl_network import NcclNetwork, NcclProbeError, probe_nccl_network

ON_EFA = """\
8h200-2:6831:6840 [0] NCCL INFO NET/OFI Support for DMA-BUF registrations: false
8h200-2:6831:6840 [0] NCCL INFO PROFILER/Plugin: Could not find: libnccl-profiler.so.
8h200-2:6831:6840 [0] NCCL INFO Using network Libfabric
8h200-3:6310:6318 [0] NCCL INFO NET/OFI Selected Provider is efa (found 16 nics)
"""

OLDER_PLUGIN = """\
ip-172-0-1-23:8716:9558 [0] NCCL INFO NET/OFI Selected Provider is efa
ip-172-0-1-23:8716:9558 [0] NCCL INFO Using network AWS Libfabric
"""

ON_SOCKETS = """\
ip-10-1-2-3:79:79 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so.
ip-10-1-2-3:79:79 [0] NCCL INFO NET/Socket : Using [0]eth0:10.1.2.3<0>
ip-10-1-2-3:79:79 [0] NCCL INFO Using network Socket
"""


@pytest.mark.parametrize(
    ("log", "network", "provider"),
    [(ON_EFA, "Libfabric", "efa"), (OLDER_PLUGIN, "AWS Libfabric", "efa"), (ON_SOCKETS, "Socket", None)],
)
def test_the_network_and_provider_are_read_from_nccls_log(log: str, network: str, provider: str | None) -> None:
    found = NcclNetwork.from_log(log.splitlines())
    assert (found.network, found.ofi_provider) == (network, provider)
    assert found.libfabric is (network != "Socket")


def test_the_probe_lays_the_fabric_environment_over_nccl_debug_and_reads_the_output() -> None:
    seen: dict[str, str] = {}

    def run(env: Mapping[str, str]) -> tuple[int, str]:
        seen.update(env)
        return 0, ON_SOCKETS

    found = probe_nccl_network({"NCCL_NET_PLUGIN": "ofi"}, run=run)
    assert found.network == "Socket"
    assert (seen["NCCL_NET_PLUGIN"], seen["NCCL_DEBUG"]) == ("ofi", "INFO")


def test_a_probe_that_dies_before_nccl_chose_says_so_with_its_output() -> None:
    with pytest.raises(NcclProbeError, match=r"exited 1 before NCCL chose a network: .*CUDA error: no device"):
        probe_nccl_network({}, run=lambda env: (1, "RuntimeError: CUDA error: no device\n"))
