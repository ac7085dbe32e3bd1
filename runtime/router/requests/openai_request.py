"""The client's request, validated just enough to route it: the model, the prompt or the messages, streaming.

The body is parsed once with the stdlib's C JSON decoder; everything the router does not look at stays in the dict
untouched and is sent on as the client wrote it. Fields the engines validate (temperature, tools, ...) are theirs.
One field is the router's own: ``kv_transfer_params`` (the NIXL hand-off between the legs). A client's is dropped
here, so no path can forward it (decode would open a NIXL handshake to any host the client names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from runtime.router.config import MAX_MESSAGES
from runtime.router.requests.api_error import ApiError

Endpoint = Literal["completions", "chat"]
PATHS: dict[Endpoint, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class _Routable(BaseModel):
    """The fields routing depends on; other fields pass through unchecked."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: StrictBool | None = False


class CompletionBody(_Routable):
    prompt: str | list[str] | list[int] | list[list[int]]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[Any] | None = None


class ChatBody(_Routable):
    messages: list[ChatMessage] = Field(min_length=1)


_MODELS: dict[Endpoint, type[_Routable]] = {"completions": CompletionBody, "chat": ChatBody}


ROUTER_OWNED = "kv_transfer_params"


@dataclass(frozen=True)
class OpenAiRequest:
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    raw: bytes
    """The body as it goes to the engines: the client's bytes, re-encoded only when a router-owned field was dropped."""

    @property
    def path(self) -> str:
        return PATHS[self.endpoint]

    @property
    def prompt(self) -> Any:
        return self.body.get("prompt")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @property
    def first_prompt(self) -> str | list[int]:
        """The prompt routing looks at: the text, the token ids, or the first of a batch."""
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, list):
            return [token for token in prompt if isinstance(token, int)]
        return prompt if isinstance(prompt, str) else ""

    @property
    def prompt_count(self) -> int:
        """How many prompts: a string or a list of token ids is one; a list of strings or of token lists is a batch."""
        prompt = self.prompt if self.endpoint == "completions" else None
        if isinstance(prompt, list) and prompt and not all(isinstance(item, int) for item in prompt):
            return len(prompt)
        return 1

    @property
    def choices(self) -> int:
        n = self.body.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) else 1

    @property
    def single_leg_reason(self) -> str | None:
        """Why this request must be served by decode alone, or None when it can be split into two legs.

        A prefill answer hands over the KV of ONE sequence: a batch of prompts would have every choice decode on the
        first prompt's blocks, and ``n > 1`` would have decode's child requests pull blocks the prefill frees after
        the first pull (both seen on vLLM 0.32: wrong choices, "Potentially invalid KV blocks"). Splitting into one
        P/D pair per prompt and reassembling the answer would need the router to re-number choices, merge usage and
        re-interleave streamed chunks exactly as vLLM does, for both endpoints: a second implementation of vLLM's
        response assembly to keep in step with every release. Decode-only is vLLM's own answer by construction, at
        the cost of computing those prompts on decode; such requests are rare in chat serving (benchmark clients
        send one prompt per request)."""
        if self.prompt_count > 1:
            return "batched_prompt"
        if self.choices > 1:
            return "several_choices"
        if self.wants_prompt_logprobs:
            return "prompt_logprobs"
        return None

    @property
    def wants_prompt_logprobs(self) -> bool:
        """Whether the engine computes prompt logprobs, which need the prompt's logits: a decode that pulled the KV
        has none (wrong answers; vLLM without vllm #50792 crashes). vLLM 0.32's ``to_sampling_params``: the
        client's ``prompt_logprobs``, else with ``echo`` the ``logprobs`` of completions or the ``top_logprobs`` of
        chat (default 0, so ``echo`` alone asks for them there)."""
        body = self.body
        if body.get("prompt_logprobs") is not None:
            return True
        if not body.get("echo"):
            return False
        if self.endpoint == "completions":
            return body.get("logprobs") is not None
        return body.get("top_logprobs", 0) is not None

    @classmethod
    def parse(cls, endpoint: Endpoint, raw: bytes, max_items: int = MAX_MESSAGES) -> OpenAiRequest:
        """``max_items``: most chat messages, or prompts in one batch; a longer array is refused before it is
        validated (600k messages took the event loop seconds)."""
        try:
            text = raw.decode("utf-8")  # strictly: json.loads would guess UTF-16/32, which the engines are sent as is
        except UnicodeDecodeError:
            raise ApiError(
                400, "the request body must be JSON encoded in UTF-8 (RFC 8259)", code="invalid_json"
            ) from None
        try:
            body = json.loads(text)
        except ValueError as error:
            raise ApiError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "the request body is not valid JSON: nested too deeply", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        _check_lengths(endpoint, body, max_items)
        try:
            routable = _MODELS[endpoint].model_validate(body)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            message = f"{param}: {first['msg']}" if param else first["msg"]
            raise ApiError(
                400,
                message,
                param=param,
                code="invalid_value" if first["type"] != "missing" else "missing_required_parameter",
            ) from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply", code="invalid_json") from None
        if ROUTER_OWNED in body:
            del body[ROUTER_OWNED]
            raw = json.dumps(body, separators=(",", ":")).encode()
        return cls(endpoint=endpoint, body=body, model=routable.model, stream=bool(routable.stream), raw=raw)


def _check_lengths(endpoint: Endpoint, body: dict[str, Any], max_items: int) -> None:
    """Chat messages, or a batch of prompts (strings or token lists; one prompt's token ids are not items), in
    OpenAI's own words for too long an array."""
    name = "messages" if endpoint == "chat" else "prompt"
    items = body.get(name)
    if not isinstance(items, list) or len(items) <= max_items or (name == "prompt" and isinstance(items[0], int)):
        return
    raise ApiError(
        400,
        f"Invalid '{name}': array too long. Expected an array with maximum length {max_items}, but "
        f"got an array with length {len(items)} instead.",
        param=name,
        code="array_above_max_length",
    )
