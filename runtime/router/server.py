"""The router process: assembles the parts from the serving configuration, serves until SIGTERM/SIGINT, then
drains (stops accepting, lets requests in flight finish within ``shutdown_grace_s``) and stops its tasks."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import zmq.asyncio
from aiohttp import web

from runtime.config import Serving
from runtime.json_log import EventLog
from runtime.model_fetch import TOKENIZER_FILES, ModelFetch, ModelFetchError
from runtime.roles import ROLES, Role
from runtime.router.admission import AdmissionQueue
from runtime.router.api_keys import RECHECK_S, ApiKeys
from runtime.router.app import RouterState, build_app, build_metrics_app
from runtime.router.config import RouterConfig
from runtime.router.discovery.dns_records import DnsRecordsDiscovery
from runtime.router.discovery.endpoint_slices import EndpointSliceDiscovery
from runtime.router.discovery.source import DiscoverySource
from runtime.router.discovery.static_list import StaticDiscovery
from runtime.router.engines.engine import Engine, EngineSpec
from runtime.router.engines.model_catalog import ModelCatalog
from runtime.router.engines.monitor import EngineMonitor
from runtime.router.engines.registry import EngineRegistry
from runtime.router.engines.upstream import Upstream
from runtime.router.flow.attempts import Attempts
from runtime.router.flow.observers import Backlog, EngineOutcomes, FlowMetrics, SchedulerRelease
from runtime.router.flow.pd_flow import PdFlow
from runtime.router.flow.pd_pairs import PairHealth
from runtime.router.flow.prefill_backlog import PrefillBacklog
from runtime.router.prefix_cache.dp_ranks import holder, rank_endpoints
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.prefix_cache.kv_event_subscriber import KvEventSubscriber, RankSubscribers
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.requests.client_guard import ConnectionLimits, GuardedSite
from runtime.router.requests.prompt_reader import PromptReader
from runtime.router.requests.prompt_tokenizer import PromptTokenizer
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.scheduler import Scheduler
from runtime.router.server_log import server_logger

log = EventLog("runtime.router")
TOKENIZER_CACHE = os.path.join(tempfile.gettempdir(), "pdstack-router-tokenizer")


class RouterServer:
    def __init__(self, serving: Serving, config: RouterConfig | None = None) -> None:
        self.serving = serving
        self.config = config or serving.router
        self.block_size = serving.model.block_size
        self.metrics = RouterMetrics()
        self.index = PrefixIndex(self.config.index_capacity_blocks)
        tokenizer = self._load_tokenizer()
        self.precise = self.config.prefix_mode == "precise" and tokenizer is not None and serving.kv_events.enabled
        if self.config.prefix_mode == "precise" and not self.precise:
            log.warning(
                "precise_mode_unavailable",
                reason="needs a tokenizer and serving.kv_events.enabled",
                using="approximate",
            )
        self.zmq = zmq.asyncio.Context() if self.precise else None
        self.registry = EngineRegistry(self.config, self.metrics, self._subscription if self.precise else None)
        self.catalog = ModelCatalog(serving.model.served_name, self.registry)
        self.upstream = Upstream(self.config.timeouts)
        self.pairs = PairHealth(self.metrics)
        scheduler = Scheduler.from_config(self.config, self.index, learn=not self.precise, pairs=self.pairs)
        self.registry.listeners += [self.index, scheduler, self.pairs]
        observers = [
            FlowMetrics(self.metrics, self.registry),
            Backlog(PrefillBacklog(self.config.signals.prefill_tokens_per_s, self.metrics.prefill_backlog)),
            EngineOutcomes(self.registry, self.pairs),
            SchedulerRelease(scheduler),
        ]
        attempts = Attempts(scheduler, self.registry, self.config.retries, self.metrics)
        self.flow = PdFlow(
            self.config,
            self.registry,
            scheduler,
            self.index,
            PromptReader(self.block_size, tokenizer),
            self.upstream,
            attempts,
            observers,
        )
        self.admission = AdmissionQueue(self.config.admission, self.config.saturation, self.registry, self.metrics)
        self.state = RouterState(
            self.registry,
            self.flow,
            self.catalog,
            self.index,
            self.metrics,
            self.config.max_body_bytes,
            self.admission,
            self.config.timeouts.client_body_s,
            self.config.max_messages,
            ApiKeys(self.config.api_keys_path) if self.config.api_keys_path else None,
        )
        self.app = build_app(self.state, metrics=self.config.metrics_port is None)
        self.metrics_app = build_metrics_app(self.state) if self.config.metrics_port is not None else None
        self.monitor: EngineMonitor | None = None
        self.site_limits = ConnectionLimits(
            self.config.max_connections, self.config.timeouts.client_headers_s, self.config.timeouts.client_write_s
        )
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None

    def _load_tokenizer(self) -> PromptTokenizer | None:
        directory = self.config.tokenizer
        if directory is None and self.serving.model.source_kind == "local":
            directory = self.serving.model.source
        if directory is None and self.serving.model.source_kind == "s3":
            directory = self._fetch_tokenizer()
        if directory is None or not Path(directory).is_dir():
            log.warning("no_tokenizer", directory=directory, using="character blocks")
            return None
        try:
            return PromptTokenizer(directory)
        except Exception as error:  # any unreadable tokenizer: route by characters, say so
            log.warning("no_tokenizer", directory=directory, reason=str(error)[:200], using="character blocks")
            return None

    def _fetch_tokenizer(self) -> str | None:
        """An ``s3://`` model's tokenizer files (no weights) into a local directory, once, before serving."""
        fetch = ModelFetch(self.serving.model, only=TOKENIZER_FILES, cache_dir=TOKENIZER_CACHE, parallel=4)
        try:
            return fetch.ensure()
        except ModelFetchError as error:
            log.warning(
                "no_tokenizer", source=self.serving.model.source, reason=str(error)[:300], using="character blocks"
            )
            return None

    def discovery(self) -> DiscoverySource:
        discovery = self.config.discovery
        if discovery.dns is not None:
            ports: dict[Role, int] = {role: self.serving.role(role).ports.http for role in ROLES}
            return DnsRecordsDiscovery(discovery.dns, ports, self._kv_endpoint, metrics=self.metrics)
        if discovery.kubernetes is not None:
            return EndpointSliceDiscovery(discovery.kubernetes, self._kv_endpoint, metrics=self.metrics)
        return StaticDiscovery(discovery.static)

    def _kv_endpoint(self, address: str, role: Role) -> str | None:
        if not self.precise:
            return None
        host = f"[{address}]" if ":" in address else address
        return f"tcp://{host}:{self.serving.role(role).ports.kv_events}"

    def on_engines(self, specs: list[EngineSpec]) -> None:
        added, _ = self.registry.replace(specs)
        if self.monitor is not None:
            for engine in added:
                self.registry.spawn(self.monitor.check_engine(engine))

    def _subscription(self, engine: Engine) -> KvEventSubscriber | RankSubscribers | None:
        """One subscriber per KV-event publisher the engine's pod may bind: one for an engine of one rank, one per
        data-parallel rank of its replica otherwise, each indexing under its rank (prefix_cache/dp_ranks.py)."""
        if self.zmq is None or not engine.kv_events:
            return None
        role = self.serving.role(engine.role)
        subscribers = []
        for rank in rank_endpoints(engine.kv_events, role.data_parallel, role.data_parallel_local):
            name = holder(engine.url, rank.local_rank)
            indexer = KvEventIndexer(name, self.index, self.block_size, self.config.index_capacity_blocks)
            label = holder(engine.name, rank.local_rank)
            subscribers.append(
                KvEventSubscriber(label, rank.endpoint, indexer, self.metrics, self.zmq, rank=rank.global_rank)
            )
        return subscribers[0] if len(subscribers) == 1 else RankSubscribers(subscribers)

    async def start(self) -> None:
        await self.upstream.start()
        self.monitor = EngineMonitor(self.registry, self.upstream.session, self.block_size)
        source = self.discovery()
        self.registry.supervise("discovery", lambda: source.run(self.on_engines))
        await asyncio.sleep(0)
        self.monitor.start(self.config.health_interval_s, self.config.metrics_interval_s)
        if self.state.api_keys is not None:
            self.registry.every(RECHECK_S, self.state.api_keys.refresh)
        # lingering_time: after an error answer, how long aiohttp keeps reading a body nobody will use (its default
        # 10 s lets a client that stopped sending hold the connection that long after its 408)
        # keepalive_timeout: aiohttp's default keeps an idle connection 3630 s
        self._runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            lingering_time=1.0,
            keepalive_timeout=self.config.timeouts.client_idle_s,
            logger=server_logger(),
            shutdown_timeout=self.config.shutdown_grace_s,
        )
        await self._runner.setup()
        site = GuardedSite(self._runner, self.config.host, self.config.port, self.site_limits)
        await site.start()
        if self.metrics_app is not None:
            self._metrics_runner = web.AppRunner(self.metrics_app, access_log=None, logger=server_logger())
            await self._metrics_runner.setup()
            await web.TCPSite(self._metrics_runner, self.config.host, self.config.metrics_port).start()
        log.info(
            "router_listening",
            host=self.config.host,
            port=self.config.port,
            metrics_port=self.config.metrics_port or self.config.port,
            precise=self.precise,
            loop=type(asyncio.get_running_loop()).__module__,
            block_size=self.block_size,
            pd_threshold_tokens=self.config.pd_threshold_tokens,
        )

    async def stop(self) -> None:
        self.state.draining = True
        log.info("router_draining", grace_s=self.config.shutdown_grace_s)
        if self._runner is not None:
            await self._runner.cleanup()  # stops listening, waits for requests in flight, then cancels the rest
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.admission.stop()
        await self.registry.stop()  # discovery, health and metrics rounds, KV-event subscribers
        await self.upstream.close()
        if self.zmq is not None:
            self.zmq.term()
        log.info("router_stopped")

    async def serve_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (runtime/requirements.txt; libuv, about a third less CPU per request
    in bench/results/router_overhead.md), else asyncio's own (None)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(serving: Serving) -> int:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(RouterServer(serving).serve_until_signalled())
    return 0
