"""The HTTP side every fake vLLM engine shares, on loopback (aiohttp): the OpenAI routes, the info endpoints routers
probe (vllm-router and SMG ask for server info, load, version, tokenize), start and stop. A subclass answers the
generations and /metrics: the fault-injecting engine of the tests (testbed/fault_engine.py) and the bench's
simulated engine (bench/fake_engine/engine.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class LoopbackEngine:
    name: str
    model: str = "tiny"
    block_size: int = 32
    prompt_tokens_details: bool = True
    """Usage carries prompt_tokens_details (vLLM's --enable-prompt-tokens-details)."""
    healthy: bool = True
    port: int = 0
    host: str = "127.0.0.1"
    """Any loopback address (127.0.0.0/8): engines on one port at several addresses, as a headless Service's pods."""
    kv_events_endpoint: str | None = None
    max_model_len: int = 1024
    started_at: float = field(default_factory=time.time)
    """process_start_time_seconds in /metrics (as prometheus_client's process collector reports it in vLLM)."""
    drain_s: float = 0.5
    """On stop: how long requests in flight may finish after the engine stops listening (its drain)."""
    health_checks: int = 0
    pulled: int = 0
    """Decode legs that pulled the prefill's KV (complete params)."""
    recomputed: int = 0
    """Decode legs whose params were incomplete: vLLM recomputes the prompt."""
    aborted: int = 0
    """Generations the client (the router) went away from."""
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self.metrics)
        # what vllm-router probes besides the OpenAI API
        for path in ("/get_server_info", "/server_info", "/get_model_info"):
            app.router.add_get(path, self._server_info)
        app.router.add_get("/get_load", self._load)
        app.router.add_get("/health_generate", self._health)
        app.router.add_get("/kv_event_sources", self._kv_event_sources)
        app.router.add_get("/version", self._version)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        return app

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(
            self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=self.drain_s
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port or self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def metrics(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def load(self) -> tuple[int, int]:
        """(running, waiting) requests, for /get_load."""
        return 0, 0

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "vllm",
                        "max_model_len": self.max_model_len,
                    }
                ],
            }
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        """vLLM's /tokenize answer shape: one id per character here (code points), enough to round-trip."""
        body = await request.json()
        tokens = [ord(ch) for ch in str(body.get("prompt", ""))]
        return web.json_response(
            {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens, "token_strs": None}
        )

    async def _detokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"prompt": "".join(chr(t) for t in body.get("tokens", []))})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.32.0+fake"})

    async def _server_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_path": self.model,
                "served_model_name": self.model,
                "block_size": self.block_size,
                "kv_block_size": self.block_size,
                "vllm_config": {
                    "cache_config": {"block_size": self.block_size},
                    "model_config": {"served_model_name": self.model, "max_model_len": self.max_model_len},
                },
            }
        )

    async def _load(self, request: web.Request) -> web.Response:
        running, waiting = self.load()
        return web.json_response({"load": running + waiting, "num_running_reqs": running, "num_waiting_reqs": waiting})

    async def _kv_event_sources(self, request: web.Request) -> web.Response:
        endpoints = [self.kv_events_endpoint] if self.kv_events_endpoint else []
        return web.json_response({"endpoints": endpoints, "block_size": self.block_size})

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        return web.Response(status=200 if self.healthy else 503)
