"""The end-to-end tier's fixtures over the test bed (testbed/cpu_pair.py): the vLLM CPU venv, the tiny local models,
and ONE prefill + decode pair with the router in front (tests/support/routed_pair.py), started through
``python -m runtime`` once per session and shared by every module whose engines need nothing else (a module that
needs another engine config, such as the autoscaling module's small decode KV cache, starts its own). A module that
kills an engine leaves it dead for its own later tests; the next module gets it restarted. Every server is stopped
when the session ends, pass or fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testbed.cpu_pair import REPO, WORK, install_vllm_venv, make_tiny_model, make_tiny_moe_model, server_environment
from testbed.ports import free_ports
from tests.support.routed_pair import PdPair, RoutedBed, RoutedPair, new_bed, routed_serving, stop_every_bed


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM test venv's interpreter, installed (or confirmed cached) by the repo's own script."""
    return install_vllm_venv()


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    return make_tiny_model(vllm_python)


@pytest.fixture(scope="session")
def tiny_moe_model(vllm_python: Path) -> Path:
    return make_tiny_moe_model(vllm_python)


@pytest.fixture(scope="session")
def routed_bed(vllm_python: Path, tiny_model: Path) -> Iterator[RoutedBed]:
    """The session's pair and router, started at the first module that asks."""
    ports = free_ports(9)
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "router-deployment.yaml"
    config.write_text(yaml.safe_dump({"name": "cpu-router", "serving": routed_serving(tiny_model, ports)}))
    bed = new_bed(Path(sys.executable), vllm_python, config, ports, server_environment(vllm_python), WORK, REPO)
    try:
        bed.start()
        pair = bed.pair
        print(f"\nserver start: prefill {pair.prefill.started_in_s:.1f} s, decode {pair.decode.started_in_s:.1f} s")
        yield bed
    finally:
        bed.stop()
        print(f"\nthe session's CPU pair: {bed.starts} server starts (engines and router)")


@pytest.fixture(scope="module")
def routed(routed_bed: RoutedBed) -> RoutedPair:
    """The session's pair and router, every server running when the module starts."""
    routed_bed.revive()
    return routed_bed.pair


@pytest.fixture(scope="module")
def cores_to_itself() -> None:
    """For a module that starts a pair of its own: the session's pair is stopped first (both would pin the same two
    cores), and restarted by the next module that asks for it."""
    stop_every_bed()


@pytest.fixture(scope="module")
def pd_pair(routed: RoutedPair) -> PdPair:
    """The session's two engines, for a module that drives both legs itself."""
    return PdPair(prefill=routed.prefill, decode=routed.decode, model=routed.model)
