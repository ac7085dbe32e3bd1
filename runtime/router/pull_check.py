"""Tells when a decode engine recomputed the prompt instead of pulling its KV from prefill.

vLLM's decode does that silently when the ``kv_transfer_params`` it got are incomplete ("Got invalid
KVTransferParams"), so the router checks twice: the params before it sends them, and the decode's usage after (with
``--enable-prompt-tokens-details`` the decode reports pulled tokens as cached; far fewer cached than prompt tokens
means it computed them itself).
"""

from __future__ import annotations

from typing import Any

REQUIRED_PARAMS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size")


def missing_params(params: dict[str, Any]) -> list[str]:
    return [name for name in REQUIRED_PARAMS if params.get(name) is None]


def recomputed(usage: Any, block_size: int) -> bool:
    """True when the usage shows the decode computed more than the last partial block of the prompt itself."""
    if not isinstance(usage, dict):
        return False
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict) or not isinstance(details.get("cached_tokens"), int):
        return False
    prompt_tokens = usage.get("prompt_tokens")
    if not isinstance(prompt_tokens, int):
        return False
    return prompt_tokens - details["cached_tokens"] > block_size
