"""Whether a model is a mixture of experts, read from its ``config.json`` the way the pinned vLLM reads it, so a role
with ``expert_parallel`` on a dense model is refused with the reason instead of vLLM failing at start.

vLLM 0.32.0 counts a model's experts in ``vllm/transformers_utils/model_arch_config_convertor.py``
(``get_num_experts``): the first of ``num_experts`` (Jamba, Qwen-MoE), ``moe_num_experts`` (DBRX), ``n_routed_experts``
(DeepSeek), ``num_local_experts`` (Mixtral) that is set on the text config (a list counts by its first item), else the
largest ``n_routed_experts`` of a ``block_configs`` entry whose ``block_type`` is ``moe`` (NemotronH). A model is MoE
when that count is above 0 (``ModelConfig.is_moe``). Multimodal configs carry the language model under ``text_config``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPERT_COUNT_KEYS = ("num_experts", "moe_num_experts", "n_routed_experts", "num_local_experts")


class ModelConfigError(ValueError):
    """The model's config.json is missing the facts asked for, or contradicts the serving configuration."""


def expert_count(config: dict[str, Any]) -> int:
    """The number of routed experts of a model from its parsed ``config.json`` (0: a dense model)."""
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    for key in EXPERT_COUNT_KEYS:
        value = text.get(key)
        if isinstance(value, list):
            value = value[0] if value else 0
        if value:
            return int(value)
    blocks = text.get("block_configs") or []
    return max(
        (b.get("n_routed_experts", 0) for b in blocks if isinstance(b, dict) and b.get("block_type") == "moe"),
        default=0,
    )


def read_model_config(model_dir: Path) -> dict[str, Any] | None:
    """The model directory's ``config.json``, or None when ``model_dir`` is not a local directory (a hub id)."""
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelConfigError(f"{path}: cannot read the model's config.json: {error}") from error
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: expected a JSON object")
    return data


def architectures(config: dict[str, Any]) -> str:
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    return ", ".join(str(name) for name in names)
