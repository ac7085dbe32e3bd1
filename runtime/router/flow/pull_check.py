"""Tells when a decode engine will recompute the prompt instead of pulling its KV from prefill.

vLLM's decode does that silently when the ``kv_transfer_params`` it gets are incomplete ("Got invalid
KVTransferParams"): it logs a warning and computes the whole prompt itself. The router checks the params prefill
returned before it sends them on, and counts and logs every request that would recompute.

The decode's usage cannot tell instead: measured on vLLM 0.32, ``prompt_tokens_details.cached_tokens`` on decode
counts its own local prefix-cache hits only, never the pulled tokens (a fully pulled 111-token prompt reported 32).
"""

from __future__ import annotations

from typing import Any

REQUIRED_PARAMS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size")


def missing_params(params: dict[str, Any]) -> list[str]:
    return [name for name in REQUIRED_PARAMS if params.get(name) is None]
