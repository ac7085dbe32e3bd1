"""vLLM 0.32's OpenAI answer shapes, shared by the fault-injecting engine (testbed/fault_engine.py) and the bench's
simulated engine (bench/fake_engine/engine.py): completion and chat bodies, SSE chunks, usage, the prefill leg's
``kv_transfer_params`` and the error body. tests/e2e/test_fake_engine_contract.py holds both engines' answers to a
real vLLM's keys, so a field vLLM adds or drops fails there, not in a router."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

Kind = Literal["text_completion", "chat.completion"]
TransferMode = Literal["local", "prefill_only", "pull", "recompute"]

KV_PARAMS_NEEDED = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size")
"""The decode leg pulls only when the prefill's params carry all of these (vLLM's NixlConnector); else it recomputes."""
SSE_DONE = b"data: [DONE]\n\n"


def transfer_mode(params: dict[str, Any] | None) -> TransferMode:
    """What an engine does with a request's ``kv_transfer_params``: compute it alone, be the prefill leg, pull the
    prefill's KV, or recompute because the params are incomplete."""
    params = params or {}
    if params.get("do_remote_decode"):
        return "prefill_only"
    if params.get("do_remote_prefill") or params.get("remote_engine_id"):
        return "pull" if all(params.get(name) is not None for name in KV_PARAMS_NEEDED) else "recompute"
    return "local"


def usage(
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    *,
    details: bool = True,
    created_cache_tokens: int | None = None,
) -> dict[str, Any]:
    """The usage object; ``prompt_tokens_details`` only with ``--enable-prompt-tokens-details`` (``details``)."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": None,
    }
    if details:
        out["prompt_tokens_details"] = {
            "cached_tokens": cached_tokens,
            "multimodal_tokens": None,
            "created_cache_tokens": created_cache_tokens,
        }
    return out


def document(
    kind: Kind,
    answer_id: str,
    model: str,
    text: str,
    usage_: dict[str, Any],
    kv_transfer_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole (not streamed) answer with every top-level and choice field vLLM 0.32 sends."""
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": "length",
        "logprobs": None,
        "stop_reason": None,
        "token_ids": None,
        "routed_experts": None,
    }
    answer: dict[str, Any] = {
        "id": answer_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage_,
        "service_tier": None,
        "system_fingerprint": None,
        "metrics": None,
        "ec_transfer_params": None,
        "kv_transfer_params": kv_transfer_params,
    }
    if kind == "chat.completion":
        choice["message"] = {"role": "assistant", "content": text}
        answer.update({"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None})
    else:
        choice.update({"text": text, "prompt_logprobs": None, "prompt_token_ids": None})
    return answer


def request_id(headers: Any) -> str:
    """The id vLLM gives a request: the client's X-Request-Id, else one of its own. Never None: a decode leg needs it
    to pull, and routers such as SMG send no X-Request-Id."""
    return headers.get("X-Request-Id") or f"cmpl-{uuid.uuid4().hex}"


def prefill_kv_transfer_params(
    engine_id: str, request_id: str, block_ids: list[int], prompt_tokens: int, cached_tokens: int
) -> dict[str, Any]:
    """The prefill leg's ``kv_transfer_params`` with vLLM 0.32's keys (NixlConnector, pull mode)."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [block_ids],
        "remote_engine_id": engine_id,
        "remote_request_id": request_id,
        "remote_host": "127.0.0.1",
        "remote_port": 5600,
        "tp_size": 1,
        "pp_size": 1,
        "dcp_size": 1,
        "remote_num_tokens": prompt_tokens,
        "remote_prefill_cached_tokens": cached_tokens,
        "remote_blocks_expiry_time": time.time() + 30.0,
        "transfer_mode": "pull",
    }


def chunk_object(kind: Kind) -> str:
    return "chat.completion.chunk" if kind == "chat.completion" else "text_completion"


def opening_chunk(answer_id: str, model: str, created: int) -> dict[str, Any]:
    """vLLM opens a chat stream with the role alone."""
    return {
        "id": answer_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
        "prompt_token_ids": None,
        "prompt_text": None,
    }


def token_chunk(kind: Kind, answer_id: str, model: str, created: int, piece: str, last: bool) -> dict[str, Any]:
    """One generated piece of a stream."""
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length" if last else None}
    if kind == "chat.completion":
        choice["delta"] = {"content": piece}
    else:
        choice.update({"text": piece, "stop_reason": None, "prompt_token_ids": None, "token_ids": None})
    return {"id": answer_id, "object": chunk_object(kind), "created": created, "model": model, "choices": [choice]}


def usage_chunk(kind: Kind, answer_id: str, model: str, created: int, usage_: dict[str, Any]) -> dict[str, Any]:
    """The last chunk when the client asked ``stream_options.include_usage``."""
    return {
        "id": answer_id,
        "object": chunk_object(kind),
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_,
        "system_fingerprint": "vllm-0.32.0-fake",
    }


def error_body(message: str, type_: str, code: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's error answer (and, inside a stream, its error event)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event line as vLLM writes it."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
