"""The HTTP surface: OpenAI's completions, chat completions and models, vLLM's /tokenize, /detokenize and /version
(passed to an engine), plus health and readiness; /metrics on its own port (``build_metrics_app``), or here when
``serving.router.metrics_port`` is None. With ``serving.router.api_keys_path`` every path but health, readiness and
metrics needs a key.

Every client error is answered in OpenAI's error shape with the right status (400, 401, 404, 405, 408, 413, 415);
nothing a client sends can produce a 500. Each request carries an ``X-Request-Id`` (the client's, or a new one) to both
legs, into every log line, and back in the response.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime.json_log import EventLog
from runtime.router.admission import AdmissionQueue, Overloaded
from runtime.router.api_keys import ApiKeys
from runtime.router.config import MAX_MESSAGES
from runtime.router.engines.breaker import STATE_VALUES
from runtime.router.engines.model_catalog import ModelCatalog
from runtime.router.engines.passthrough import PATHS as PASSTHROUGH_PATHS
from runtime.router.engines.passthrough import forward
from runtime.router.engines.registry import EngineRegistry
from runtime.router.flow.pd_flow import ClientGone, PdFlow
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.requests.api_error import ApiError
from runtime.router.requests.checks import check_request
from runtime.router.requests.keys import REQUEST_ID
from runtime.router.requests.openai_request import Endpoint, OpenAiRequest
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.scheduler import NoEngineAvailable

log = EventLog("runtime.router.app")

STATE = web.AppKey("router_state", object)
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouterState:
    """What the handlers need; built by :class:`~runtime.router.server.RouterServer`."""

    def __init__(
        self,
        registry: EngineRegistry,
        flow: PdFlow,
        catalog: ModelCatalog,
        index: PrefixIndex,
        metrics: RouterMetrics,
        max_body_bytes: int,
        admission: AdmissionQueue,
        client_body_s: float = 60.0,
        max_messages: int = MAX_MESSAGES,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self.registry = registry
        self.admission = admission
        self.flow = flow
        self.catalog = catalog
        self.index = index
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.client_body_s = client_body_s
        self.max_messages = max_messages
        self.api_keys = api_keys
        self.draining = False


def shortened(text: str, limit: int = 200) -> str:
    """What a client wrote, cut to fit a log line or an error message (a 1 MB model name is not repeated)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def request_id_of(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if 0 < len(given) <= 200 and given.isprintable() else f"pdstack-{uuid.uuid4().hex}"


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413) and any bug become OpenAI-shaped answers; bugs are logged, not hidden."""
    try:
        return await handler(request)
    except ApiError as error:
        return error.response(request.get(REQUEST_ID))
    except web.HTTPRequestEntityTooLarge:  # it carries no max_size attribute (aiohttp 3.14): say the router's own
        return _too_large(_state(request)).response(request.get(REQUEST_ID))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return ApiError(error.status, error.reason or "error", code=error.reason).response()
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.error("unhandled", request_id=request.get(REQUEST_ID), path=request.path, exc_info=True)
        return ApiError(500, "internal router error", code="internal_error").response(request.get(REQUEST_ID))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``serving.router.api_keys_path`` set, every path but health, readiness and metrics (which keep their own
    rules: the kubelet and the collector carry no key) needs ``Authorization: Bearer <key>``; else 401."""
    keys = _state(request).api_keys
    if keys is None or request.path in OPEN_PATHS:
        return await handler(request)
    authorization = request.headers.get("Authorization")
    if keys.allows(authorization):
        return await handler(request)
    reason = "missing" if not authorization else "invalid"
    _state(request).metrics.auth_failures.labels(reason).inc()
    log.warning("unauthorized", path=shortened(request.path), reason=reason, client=request.remote)
    message = (
        "You didn't provide an API key: send it as Authorization: Bearer <key>."
        if reason == "missing"
        else "Incorrect API key provided."
    )
    response = ApiError(401, message, code="invalid_api_key").response(request_id_of(request))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def build_app(state: RouterState, metrics: bool = True) -> web.Application:
    """The API; ``metrics``: with ``/metrics`` too (else :func:`build_metrics_app` serves it on its own port)."""
    app = web.Application(middlewares=[openai_errors, authenticate], client_max_size=state.max_body_bytes)
    app[STATE] = state
    app.router.add_post("/v1/completions", _generation("completions"))
    app.router.add_post("/v1/chat/completions", _generation("chat"))
    app.router.add_get("/v1/models", _models)
    for path, method in PASSTHROUGH_PATHS.items():
        app.router.add_route(method, path, _passthrough)
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    if metrics:
        app.router.add_get("/metrics", _metrics)
    return app


def build_metrics_app(state: RouterState) -> web.Application:
    """``/metrics`` alone, for ``serving.router.metrics_port``: its series name every engine's address, which the
    API's answers take care to hide from clients."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", _metrics)
    return app


def _state(request: web.Request) -> RouterState:
    return request.app[STATE]  # type: ignore[return-value]


def _generation(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        request_id = request[REQUEST_ID] = request_id_of(request)
        outcome = "ok"
        try:
            if request.content_type != "application/json":
                raise ApiError(
                    415,
                    f"Content-Type must be application/json, got {request.content_type!r}",
                    code="unsupported_media_type",
                )
            api = OpenAiRequest.parse(endpoint, await read_body(request, state), state.max_messages)
            if not state.catalog.knows(api.model):
                raise ApiError(
                    404, f"The model `{shortened(api.model)}` does not exist.", param="model", code="model_not_found"
                )
            check_request(api, state.catalog.max_model_len(api.model))
            async with state.admission.admitted(state.admission.priority_of(request.headers)):
                served = await state.flow.serve(request, api, request_id)
            assert served.response is not None  # serve returns only once it answered
            outcome = served.result
            return served.response
        except Overloaded as error:
            outcome = "overloaded"
            log.warning("request_rejected", request_id=request_id, priority=error.priority, reason=error.reason)
            return error.response(request_id)
        except ApiError as error:
            outcome = "client_error" if error.status < 500 else "upstream_error"
            log.warning("request_failed", request_id=request_id, status=error.status, reason=shortened(error.message))
            return error.response(request_id)
        except NoEngineAvailable as error:
            outcome = "no_engine"
            return ApiError(503, str(error), code="no_engine_available").response(request_id)
        except ClientGone:
            outcome = "client_disconnected"
            state.metrics.client_disconnects.inc()
            log.info("client_disconnected", request_id=request_id)
            return web.Response(status=499)  # nobody reads it: aiohttp's write fails quietly (no error log)
        except (asyncio.CancelledError, ConnectionResetError):
            outcome = "client_disconnected"
            state.metrics.client_disconnects.inc()
            log.info("client_disconnected", request_id=request_id)
            raise
        except Exception:
            outcome = "error"  # a router bug: the middleware answers 500 and logs it with its traceback
            raise
        finally:
            state.metrics.requests.labels(endpoint, outcome).inc()

    return handle


async def read_body(request: web.Request, state: RouterState) -> bytes:
    """The whole body within ``client_body_s`` and ``max_body_bytes`` (else 408 or 413); later reads of the same
    request return it from aiohttp's cache."""
    if request.content_length is not None and request.content_length > state.max_body_bytes:
        raise _too_large(state)
    try:
        async with asyncio.timeout(state.client_body_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(state) from None
    except TimeoutError:
        raise ApiError(
            408, f"the request body did not arrive within {state.client_body_s} s", code="body_timeout"
        ) from None


def _too_large(state: RouterState) -> ApiError:
    return ApiError(413, f"the request body exceeds {state.max_body_bytes} bytes", code="body_too_large")


async def _passthrough(request: web.Request) -> web.Response:
    state = _state(request)
    request_id = request[REQUEST_ID] = request_id_of(request)
    if request.method == "POST":
        await read_body(request, state)  # bounded here; forward() reads it again from aiohttp's cache
    return await forward(state.flow.upstream.session, state.registry, request, request_id)


async def _models(request: web.Request) -> web.Response:
    return web.json_response(_state(request).catalog.listing())


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    state = _state(request)
    if state.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not state.registry.ready():
        return web.json_response({"status": "no healthy decode engine"}, status=503)
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    state = _state(request)
    state.metrics.index_blocks.set(len(state.index))
    state.metrics.index_evictions.set(state.index.evictions)
    for engine in state.registry:
        engine.available()  # an open breaker whose pause is over turns half-open here too
        state.metrics.in_flight.labels(engine.name, engine.role).set(engine.in_flight)
        state.metrics.breaker_state.labels(engine.name, engine.role).set(STATE_VALUES[engine.breaker.state])
    response = web.Response(body=generate_latest(state.metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


__all__ = ["OPEN_PATHS", "STATE", "RouterState", "build_app", "build_metrics_app", "request_id_of"]
