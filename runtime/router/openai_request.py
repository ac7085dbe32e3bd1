"""The client's request, validated just enough to route it: the model, the prompt or the messages, streaming.

The body is parsed once with the stdlib's C JSON decoder; everything the router does not look at stays in the dict
untouched and is sent on as the client wrote it. Fields the engines validate (temperature, tools, ...) are theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from runtime.router.api_error import ApiError

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


@dataclass(frozen=True)
class OpenAiRequest:
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool

    @property
    def path(self) -> str:
        return PATHS[self.endpoint]

    @property
    def prompt(self) -> Any:
        return self.body.get("prompt")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @classmethod
    def parse(cls, endpoint: Endpoint, raw: bytes) -> OpenAiRequest:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            routable = _MODELS[endpoint].model_validate(body)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            message = f"{param}: {first['msg']}" if param else first["msg"]
            raise ApiError(400, message, param=param, code="invalid_value" if first["type"] != "missing"
                           else "missing_required_parameter") from None
        return cls(endpoint=endpoint, body=body, model=routable.model, stream=bool(routable.stream))
