"""Fixtures of the runtime unit tests (the plain-data helpers are in tests/support/runtime_inputs.py)."""

from __future__ import annotations

import pytest

from runtime.host_probe import Host


@pytest.fixture
def cpu_host() -> Host:
    return Host(platform="cpu", gpus=0, efa_devices=[], pod_ip="127.0.0.1", socket_ifname="lo", lws=None)
