"""Errors a client can cause, answered in OpenAI's error shape (the official SDK raises the matching exception)."""

from __future__ import annotations

import json

from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    """Raised anywhere in request handling; the app turns it into a response with :meth:`response`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": _TYPES.get(self.status, "server_error"),
            "param": self.param,
            "code": self.code,
        }
        return json.dumps({"error": error}).encode()

    @classmethod
    def from_engine(cls, status: int, payload: bytes) -> ApiError:
        """An engine's own rejection (4xx), in the router's one error shape whichever leg it came from: vLLM's
        message and ``param`` kept, its type replaced by OpenAI's for the status."""
        message, param = "the engine rejected the request", None
        try:
            error = json.loads(payload).get("error")
            if isinstance(error, dict):
                given_message, given_param = error.get("message"), error.get("param")
                message = given_message if isinstance(given_message, str) else message
                param = given_param if isinstance(given_param, str) else None
            elif isinstance(error, str):
                message = error
        except (ValueError, AttributeError):
            pass
        return cls(status, message, param=param, code="engine_rejected")

    def response(self, request_id: str | None = None) -> web.Response:
        headers = {"X-Request-Id": request_id} if request_id else None
        return web.Response(status=self.status, body=self.body(), content_type="application/json", headers=headers)
