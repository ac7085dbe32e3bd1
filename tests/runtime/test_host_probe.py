from __future__ import annotations

from pathlib import Path

import pytest

from runtime.host_probe import HostProbe, HostProbeError
from tests.support.runtime_inputs import fake_node


def test_p5_node_with_gpus_and_efa(tmp_path: Path) -> None:
    host = fake_node(tmp_path, efa=32, other_rdma=1, gpus=8).probe()
    assert host.platform == "cuda" and host.gpus == 8
    assert len(host.efa_devices) == 32 and "mlx5_0" not in host.efa_devices
    assert host.socket_ifname == "lo"


def test_cpu_node_without_gpus_or_efa(tmp_path: Path) -> None:
    host = fake_node(tmp_path, efa=0).probe()
    assert (host.platform, host.gpus, host.efa_devices) == ("cpu", 0, [])


def test_missing_trees_mean_absent(tmp_path: Path) -> None:
    host = HostProbe(dev=tmp_path / "nodev", sysfs=tmp_path / "nosys", environ={"POD_IP": "10.0.0.9"}).probe()
    assert (host.platform, host.gpus, host.efa_devices, host.pod_ip) == ("cpu", 0, [], "10.0.0.9")


def test_lws_variables(tmp_path: Path) -> None:
    environ = {"LWS_LEADER_ADDRESS": "decode-0.decode", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}
    lws = HostProbe(environ=environ).lws_placement()
    assert lws is not None and (lws.leader_address, lws.group_size, lws.worker_index) == ("decode-0.decode", 2, 1)
    with pytest.raises(HostProbeError, match="missing LWS_WORKER_INDEX"):
        HostProbe(environ={"LWS_LEADER_ADDRESS": "x", "LWS_GROUP_SIZE": "2"}).lws_placement()
