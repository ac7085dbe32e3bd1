"""The end-to-end tier's fixtures over the test bed (testbed/cpu_pair.py): the vLLM CPU venv, the tiny local model,
and a prefill + decode pair started through ``python -m runtime`` with a CPU test deployment. Every server is
stopped when the module ends, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testbed.cpu_pair import REPO, WORK, cpu_pair_serving, install_vllm_venv, make_tiny_model, server_environment
from testbed.ports import free_ports
from testbed.runtime_server import RuntimeServer


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM test venv's interpreter, installed (or confirmed cached) by the repo's own script."""
    return install_vllm_venv()


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    return make_tiny_model(vllm_python)


@dataclass(frozen=True)
class PdPair:
    prefill: RuntimeServer
    decode: RuntimeServer
    model: str


@pytest.fixture(scope="module")
def pd_pair(vllm_python: Path, tiny_model: Path) -> Iterator[PdPair]:
    ports = free_ports(8)
    deployment = {"name": "cpu-testbed", "serving": cpu_pair_serving(tiny_model, ports)}
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "cpu-deployment.yaml"
    config.write_text(yaml.safe_dump(deployment))
    env = server_environment(vllm_python)
    with ExitStack() as stack:
        prefill = stack.enter_context(
            RuntimeServer("prefill", vllm_python, config, ports[0], env, WORK / "prefill.log", REPO))
        decode = stack.enter_context(
            RuntimeServer("decode", vllm_python, config, ports[4], env, WORK / "decode.log", REPO))
        print(f"\nserver start: prefill {prefill.started_in_s:.1f} s, decode {decode.started_in_s:.1f} s")
        yield PdPair(prefill=prefill, decode=decode, model="tiny")
