"""The runtime's inputs as plain data: serving configurations, probed hosts, and a fake node's /dev and /sys for the
host probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.config import Serving
from runtime.host_probe import Host, HostProbe, LwsPlacement


def serving(**sections: Any) -> Serving:
    """A valid serving section with the given top-level sections replaced."""
    data: dict[str, Any] = {"model": {"source": "s3://models/llama-3-8b", "served_name": "llama"}}
    data.update(sections)
    return Serving.model_validate(data)


def p5_host(efa: int = 32, gpus: int = 8, lws: LwsPlacement | None = None) -> Host:
    return Host(
        platform="cuda",
        gpus=gpus,
        efa_devices=[f"rdmap{i}s0" for i in range(efa)],
        pod_ip="10.1.2.3",
        socket_ifname="eth0",
        lws=lws,
    )


def fake_node(root: Path, efa: int, other_rdma: int = 0, gpus: int = 0) -> HostProbe:
    dev, sysfs = root / "dev", root / "sys"
    dev.mkdir()
    for name in ["nvidiactl", "nvidia-uvm", *(f"nvidia{i}" for i in range(gpus))]:
        (dev / name).touch()
    drivers = sysfs / "bus" / "pci" / "drivers"
    for driver in ("efa", "mlx5_core"):
        (drivers / driver).mkdir(parents=True)
    ib = sysfs / "class" / "infiniband"
    ib.mkdir(parents=True)
    for name, driver in [
        *((f"rdmap{i}s0", "efa") for i in range(efa)),
        *((f"mlx5_{i}", "mlx5_core") for i in range(other_rdma)),
    ]:
        device = sysfs / "devices" / name
        device.mkdir(parents=True)
        (device / "driver").symlink_to(drivers / driver)
        (ib / name).mkdir()
        (ib / name / "device").symlink_to(device)
    return HostProbe(dev=dev, sysfs=sysfs, environ={"POD_IP": "127.0.0.1"})
