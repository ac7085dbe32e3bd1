"""vLLM's NIXL P/D wire format, as vLLM 0.32 speaks it (its toy proxy, tests/v1/kv_connector/nixl_integration/
toy_proxy_server.py, and vllm/entrypoints/openai/serving_*.py): what the router sends each leg and what it reads back.

  1. prefill: the client's body with ``max_tokens=1``, ``stream=false``, ``n=1``, no stream options, no
     ``min_tokens`` and ``kv_transfer_params={"do_remote_decode": true, ...}``; its answer carries the pull params.
  2. decode: the client's ORIGINAL body with those params pasted verbatim. The same ``X-Request-Id`` on both legs.

A decode that cannot pull opens its stream with an error event (``kv_load_failure_policy=fail``); a decode given
incomplete params recomputes the prompt silently (:func:`missing_params`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from runtime.router.requests.json_splice import with_fields
from runtime.router.requests.openai_request import OpenAiRequest

PREFILL_LEG = {
    "max_tokens": 1,
    "stream": False,
    "n": 1,
    "stream_options": None,
    "kv_transfer_params": {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    },
}
PREFILL_DROPS = ("min_tokens", "min_completion_tokens")
"""Not for the prefill leg: with its max_tokens=1 vLLM rejects them (vLLM's toy P/D proxy drops them there too)."""
STREAM_ERROR = b'data: {"error"'
"""How vLLM 0.32 opens a stream whose request failed in the engine (serving.py: ``yield f"data: {error}"``)."""

REQUIRED_PARAMS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size")
"""vLLM's decode recomputes the prompt silently when one of these is missing from its ``kv_transfer_params`` ("Got
invalid KVTransferParams": a warning, then the whole prompt computed locally). Its usage cannot tell instead: on
vLLM 0.32, ``prompt_tokens_details.cached_tokens`` on decode counts its own local prefix-cache hits only, never the
pulled tokens (a fully pulled 111-token prompt reported 32)."""

PullParams = dict[str, Any]


def prefill_body(api: OpenAiRequest) -> bytes:
    fields: dict[str, Any] = dict(PREFILL_LEG)
    if "max_completion_tokens" in api.body:
        fields["max_completion_tokens"] = 1
    if any(name in api.body for name in PREFILL_DROPS):  # rare: re-encode without them
        body = {name: value for name, value in api.body.items() if name not in PREFILL_DROPS}
        return json.dumps({**body, **fields}, separators=(",", ":")).encode()
    return with_fields(api.raw, fields)


def pull_params(payload: bytes) -> PullParams | None:
    """The ``kv_transfer_params`` of prefill's answer (None: it has none). Raises ValueError on a body not JSON."""
    answer = json.loads(payload)
    params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
    return params if isinstance(params, dict) else None


def decode_body(api: OpenAiRequest, params: PullParams | None) -> bytes:
    return with_fields(api.raw, {"kv_transfer_params": params}) if params is not None else api.raw


def missing_params(params: PullParams) -> list[str]:
    return [name for name in REQUIRED_PARAMS if params.get(name) is None]


def upstream_headers(request: web.Request, request_id: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    authorization = request.headers.get("Authorization")
    if authorization:
        headers["Authorization"] = authorization
    return headers


def pull_failed(head: bytes) -> bool:
    """Decode's stream opens with vLLM's error event: the pull failed."""
    return head.startswith(STREAM_ERROR) or b"\n\n" + STREAM_ERROR in head


def opening_only(head: bytes) -> bool:
    """True while the stream's head holds no complete event yet, or only vLLM's role-only opening chat chunks."""
    *complete, _partial = head.split(b"\n\n")
    return all(_role_only(event) for event in complete if event.strip())


def _role_only(event: bytes) -> bool:
    """A chat chunk whose choices carry no token and no finish: vLLM's opening ``{"role": "assistant"}`` delta. A
    completions chunk (its token in ``text``, no ``delta``) never is: it carries a token."""
    if not event.startswith(b"data: {"):
        return False
    try:
        choices = json.loads(event[6:]).get("choices")
    except (ValueError, AttributeError):
        return False
    return bool(choices) and all(
        isinstance(c, dict)
        and isinstance(c.get("delta"), dict)
        and not any(c["delta"].get(key) for key in ("content", "tool_calls", "reasoning_content"))
        and c.get("finish_reason") is None
        for c in choices
    )


def stream_error_event(request_id: str) -> bytes:
    """The event that tells a client its stream broke after it started, in the stream's own (OpenAI) format."""
    message = {
        "error": {
            "message": f"the engine stopped mid-stream (request id {request_id})",
            "type": "upstream_error",
            "param": None,
            "code": 502,
        }
    }
    return b"data: " + json.dumps(message).encode() + b"\n\n"
