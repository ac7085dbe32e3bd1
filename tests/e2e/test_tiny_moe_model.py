"""The tiny local models as pdstack's mixture-of-experts check reads them (runtime/moe_model.py, issue 23 defect 5):
the real files testbed/tiny_moe_model.py and testbed/tiny_model.py write, with the vLLM venv's transformers. Expert
parallelism is accepted on the tiny Qwen3-MoE, counted by its experts, and refused on the tiny dense Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.moe_model import architectures, expert_count, read_model_config
from runtime.worker import DecodeWorker, LaunchError
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
