"""Expert counts read from config.json as the pinned vLLM reads them (vllm 0.32.0 get_num_experts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.moe_model import ModelConfigError, expert_count, read_model_config


@pytest.mark.parametrize(
    ("config", "experts"),
    [
        ({"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 128}, 128),
        ({"architectures": ["DeepseekV3ForCausalLM"], "n_routed_experts": 256}, 256),
        ({"architectures": ["MixtralForCausalLM"], "num_local_experts": 8}, 8),
        ({"architectures": ["DbrxForCausalLM"], "moe_num_experts": 16}, 16),
        ({"architectures": ["Llama4ForConditionalGeneration"], "text_config": {"num_local_experts": 16}}, 16),
        ({"block_configs": [{"block_type": "mamba"}, {"block_type": "moe", "n_routed_experts": 64}]}, 64),
        ({"architectures": ["Qwen3MoeForCausalLM"], "num_experts": [8, 8]}, 8),
        ({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}, 0),
        ({"architectures": ["Qwen2ForCausalLM"], "num_experts": 0}, 0),
    ],
)
def test_experts_are_counted_like_vllm(config: dict, experts: int) -> None:
    assert expert_count(config) == experts


def test_a_hub_id_has_no_local_config_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    assert read_model_config(Path("org/model")) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match=r"cannot read the model's config\.json"):
        read_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"num_experts": 4}))
    assert read_model_config(tmp_path) == {"num_experts": 4}
