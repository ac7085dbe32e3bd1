"""Shared fixtures of the runtime unit tests: serving configurations and probed hosts, as plain data."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.config import Serving
from runtime.host_probe import Host, LwsPlacement


def serving(**sections: Any) -> Serving:
    """A valid serving section with the given top-level sections replaced."""
    data: dict[str, Any] = {"model": {"source": "s3://models/llama-3-8b", "served_name": "llama"}}
    data.update(sections)
    return Serving.model_validate(data)


def p5_host(efa: int = 32, gpus: int = 8, lws: LwsPlacement | None = None) -> Host:
    return Host(
        platform="cuda", gpus=gpus, efa_devices=[f"rdmap{i}s0" for i in range(efa)], pod_ip="10.1.2.3",
        socket_ifname="eth0", lws=lws,
    )


@pytest.fixture
def cpu_host() -> Host:
    return Host(platform="cpu", gpus=0, efa_devices=[], pod_ip="127.0.0.1", socket_ifname="lo", lws=None)
