"""The router's configuration: the ``serving.router`` section. Every knob the issue names, with defaults that serve
a small cluster well; every model strict and closed so a typo fails at load with the field's name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.roles import Role
from runtime.router.contract import ROLE_LABEL

MAX_MESSAGES = 10_000
"""Chat messages (or prompts of one batch) per request: 600k took the event loop seconds to validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StaticEngine(_Strict):
    url: str = Field(pattern=r"^https?://[^/\s]+$", description="base URL of one engine, e.g. http://10.0.0.7:8000")
    role: Role
    kv_events: str | None = Field(default=None, description="ZMQ endpoint of its KV events, e.g. tcp://10.0.0.7:5557")


class DnsDiscovery(_Strict):
    """A headless Service per role: its A records are the engines."""

    prefill: str | None = Field(default=None, description="DNS name whose A records are the prefill engines")
    decode: str | None = Field(default=None, description="DNS name whose A records are the decode engines")
    interval_s: float = Field(default=10.0, gt=0)


class KubernetesDiscovery(_Strict):
    """EndpointSlices labelled ``llm-d.ai/role`` (copied from their Services), listed and watched through the API
    server with the pod's service-account token."""

    namespace: str | None = Field(default=None, description="None: the pod's own namespace")
    label_selector: str = f"{ROLE_LABEL} in (prefill,decode)"
    role_label: str = ROLE_LABEL
    port_name: str = Field(default="http", description="the EndpointSlice port that serves the OpenAI API")
    api_server: str | None = Field(default=None, description="None: https://$KUBERNETES_SERVICE_HOST:$..._PORT")
    service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"


class Discovery(_Strict):
    static: list[StaticEngine] = Field(default_factory=list)
    dns: DnsDiscovery | None = None
    kubernetes: KubernetesDiscovery | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Discovery:
        sources = [name for name in ("dns", "kubernetes") if getattr(self, name) is not None]
        if self.static:
            sources.append("static")
        if len(sources) > 1:
            raise ValueError(f"serving.router.discovery has {' and '.join(sources)}; choose exactly one source")
        return self


class ScorerWeights(_Strict):
    prefix: float = Field(default=3.0, ge=0)
    load: float = Field(default=2.0, ge=0)
    session: float = Field(default=1.0, ge=0)


class Saturation(_Strict):
    """An engine past either limit is filtered out (unless every engine is)."""

    max_waiting: int = Field(default=32, ge=0, description="vllm:num_requests_waiting above this: saturated")
    max_kv_usage: float = Field(default=0.95, gt=0, le=1.0, description="vllm:kv_cache_usage_perc above this")
    max_in_flight: int = Field(default=256, ge=1, description="router-tracked requests in flight")


class Timeouts(_Strict):
    connect_s: float = Field(default=5.0, gt=0)
    first_byte_s: float = Field(default=120.0, gt=0, description="until the engine's response headers")
    idle_stream_s: float = Field(default=60.0, gt=0, description="longest gap between two streamed chunks")
    prefill_s: float = Field(
        default=30.0,
        gt=0,
        description="the whole prefill leg (it makes one token); past it "
        "the engine is ejected and the request goes on without it",
    )
    first_token_s: float = Field(
        default=30.0,
        gt=0,
        description="after a prefill leg: until decode's first chunk; "
        "past it (a stalled KV pull) the request restarts decode-only",
    )
    client_headers_s: float = Field(default=30.0, gt=0, description="a client's request line and headers")
    client_body_s: float = Field(default=60.0, gt=0, description="a client's request body")
    client_write_s: float = Field(
        default=30.0,
        gt=0,
        description="a client that reads nothing of its answer this "
        "long (the router's send buffer stays full) is disconnected, its engine request "
        "aborted",
    )
    client_idle_s: float = Field(
        default=75.0,
        gt=0,
        description="a kept-alive connection idle this long between "
        "requests is closed (aiohttp's default is 3630 s); above a load balancer's idle "
        "timeout (ALB: 60 s), so the balancer closes first",
    )


class Breaker(_Strict):
    """Per engine; defaults are vllm-router's (see runtime/router/engines/breaker.py)."""

    failures: int = Field(default=5, ge=1, description="consecutive failed requests that open the breaker")
    successes: int = Field(default=2, ge=1, description="consecutive successes while half-open that close it")
    open_s: float = Field(default=30.0, gt=0, description="open this long, then half-open")
    window_s: float = Field(default=60.0, gt=0, description="a failure run longer than this starts over")


class HealthHysteresis(_Strict):
    """vllm-router's HealthCheckConfig defaults: 3 failed probes eject, 2 passed probes restore."""

    failures: int = Field(default=3, ge=1)
    successes: int = Field(default=2, ge=1)


class Retries(_Strict):
    attempts: int = Field(default=3, ge=1, description="tries per leg, each on another engine when one is left")
    backoff_s: float = Field(default=0.05, ge=0, description="first back-off; doubles each retry")


class Admission(_Strict):
    """Admission control: when every healthy decode engine is saturated (the ``saturation`` limits), a request waits
    at the router in a bounded queue, interactive ahead of batch; past the bound (by count or by wait) it is answered
    429 with Retry-After, which the official OpenAI SDKs retry by themselves. The defaults protect a cluster: at most
    ``max_queued`` requests wait per router replica, none longer than its class allows."""

    enabled: bool = True
    max_queued: int = Field(default=64, ge=0, description="requests waiting at this router replica, both classes")
    interactive_max_wait_s: float = Field(default=5.0, gt=0, description="an interactive request waits at most this")
    batch_max_wait_s: float = Field(default=60.0, gt=0, description="a batch request waits at most this")
    priority_header: str = Field(
        default="x-pdstack-priority",
        pattern=r"^[A-Za-z0-9-]+$",
        description="request header naming the class: interactive or batch",
    )
    default_priority: Literal["interactive", "batch"] = Field(
        default="interactive", description="the class of a request without the header"
    )
    retry_after_s: int = Field(default=2, ge=1, le=60, description="the Retry-After of a rejection, in seconds")


class ScalingSignals(_Strict):
    """What the router exports for autoscaling (see the README's Autoscaling section)."""

    prefill_tokens_per_s: float = Field(
        default=20_000.0,
        gt=0,
        description="uncached prompt tokens one prefill replica computes per second (calibrate: README)",
    )


class RouterConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    metrics_port: int | None = Field(
        default=9090,
        ge=1,
        le=65535,
        description="/metrics on its own port, not the API's (its series name every "
        "engine's address); None: on the API port, for a test bed on one host",
    )
    discovery: Discovery = Discovery()
    pd_threshold_tokens: int = Field(
        default=256,
        ge=0,
        description="uncached prompt tokens on the chosen decode below this: decode serves alone; 0: always P/D",
    )
    decode_busy_kv_usage: float = Field(
        default=0.8,
        gt=0,
        le=1.0,
        description="a prompt shorter than pd_threshold_tokens still goes P/D when its decode engine has requests "
        "waiting or at least this KV cache usage (its local prefill would slow its whole batch)",
    )
    prefix_mode: Literal["precise", "approximate"] = Field(
        default="precise",
        description="precise: KV events from the engines (every router replica sees the same "
        "caches; without a tokenizer or with serving.kv_events off it falls back to approximate, and says so); "
        "approximate: each replica learns from its own decisions",
    )
    index_capacity_blocks: int = Field(default=1_000_000, ge=1, description="LRU cap of the prefix index")
    tokenizer: str | None = Field(default=None, description="directory with tokenizer.json; None: serving.model.source")
    weights: ScorerWeights = ScorerWeights()
    saturation: Saturation = Saturation()
    admission: Admission = Admission()
    signals: ScalingSignals = ScalingSignals()
    session_header: str = "x-session-id"
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_messages: int = Field(
        default=MAX_MESSAGES,
        ge=1,
        description="chat messages, or prompts in one completions "
        "batch, per request; a longer array is answered 400 before it is validated",
    )
    health_interval_s: float = Field(default=5.0, gt=0)
    health: HealthHysteresis = HealthHysteresis()
    breaker: Breaker = Breaker()
    api_keys_path: str | None = Field(
        default=None,
        description="API-key authentication: a file or a directory (a mounted Secret); every non-empty "
        "line of every file is a key, re-read when the files change; clients send Authorization: Bearer <key>, "
        "others get 401 (/health, /ready and /metrics need none); None: no authentication",
    )
    max_connections: int = Field(default=4096, ge=1, description="client connections open at once; more are closed")
    metrics_interval_s: float = Field(default=2.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _two_ports(self) -> RouterConfig:
        if self.metrics_port == self.port:
            raise ValueError(
                f"serving.router.metrics_port is the API port {self.port}: choose another, or None to "
                "serve /metrics on the API port"
            )
        return self
