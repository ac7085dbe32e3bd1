"""What vLLM certainly rejects, answered before any leg runs (else each costs a prefill: about 260 ms of engine time
instead of a few ms), with vLLM's status and ``param``. Only the certain cases: anything that depends on the prompt's
length or on the model's sampling support stays the engine's to judge.

Pinned to vLLM 0.32: ``SamplingParams._verify_args`` ("max_tokens must be at least 1, got N.", parameter
max_tokens; ``_verify_num_sequences`` for n), the protocol's ``validate_stream_options`` ("Stream options can only
be defined when `stream=True`.", parameter stream_options), and ``TokenizeParams.__post_init__``
("max_tokens=N cannot be greater than max_model_len=M. Please request fewer output tokens.")."""

from __future__ import annotations

from runtime.router.requests.api_error import ApiError
from runtime.router.requests.openai_request import OpenAiRequest


def check_request(api: OpenAiRequest, max_model_len: int | None) -> None:
    body = api.body
    for name in ("max_tokens", "max_completion_tokens"):
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(400, f"{name}: Input should be a valid integer", param=name, code="invalid_value")
        if value < 1:
            raise ApiError(400, f"max_tokens must be at least 1, got {value}.", param=name, code="invalid_value")
        if max_model_len is not None and value > max_model_len:
            raise ApiError(
                400,
                f"{name}={value} cannot be greater than max_model_len={max_model_len}. "
                "Please request fewer output tokens.",
                param=name,
                code="invalid_value",
            )
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ApiError(400, f"n must be at least 1, got {n}.", param="n", code="invalid_value")
    if body.get("stream_options") and not api.stream:
        raise ApiError(
            400, "Stream options can only be defined when `stream=True`.", param="stream_options", code="invalid_value"
        )
