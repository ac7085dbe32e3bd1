"""Engines from Kubernetes EndpointSlices: list, then watch, through the API server with the pod's service-account
token. Slices are selected by label (``llm-d.ai/role``, which Kubernetes copies from the Service onto its slices);
the label's value is the role; ready endpoints are engines. A watch that expires (410 Gone) or drops is relisted.

The API server failing (a list that errs, a watch that drops) changes nothing: the engines last listed stay, and
each failure is logged and counted (``pdstack_router_discovery_failures_total{source="endpointslices"}``). A watch
line that is not an event about an EndpointSlice (not JSON, not an object, not a slice) is skipped and counted
(``reason="bad_watch_line"``); the watch goes on."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.json_log import EventLog
from runtime.router.config import KubernetesDiscovery
from runtime.router.discovery.source import KvEventsEndpoint, OnEngines
from runtime.router.engines.engine import EngineSpec
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.discovery")
API_PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
SOURCE = "endpointslices"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SliceMetadata(_Loose):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    resourceVersion: str | None = None


class SliceConditions(_Loose):
    ready: bool | None = None


class SliceEndpoint(_Loose):
    addresses: list[str]
    conditions: SliceConditions = SliceConditions()


class SlicePort(_Loose):
    name: str | None = None
    port: int | None = None


class EndpointSlice(_Loose):
    metadata: SliceMetadata
    addressType: str = "IPv4"
    endpoints: list[SliceEndpoint] | None = None
    ports: list[SlicePort] | None = None


class WatchGone(Exception):
    pass


class BadWatchLine(ValueError):
    """A watch line that is no event about an EndpointSlice."""


class EndpointSliceDiscovery:
    def __init__(
        self,
        config: KubernetesDiscovery,
        kv_events: KvEventsEndpoint,
        retry_s: float = 2.0,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.kv_events = kv_events
        self.retry_s = retry_s
        account = Path(config.service_account_dir)
        self.token_file = account / "token"
        namespace = config.namespace
        if namespace is None:
            namespace = (account / "namespace").read_text().strip()
        self.url = self._api_server() + API_PATH.format(namespace=namespace)
        ca_file = account / "ca.crt"
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file.is_file() else True
        self.slices: dict[str, EndpointSlice] = {}

    def _api_server(self) -> str:
        if self.config.api_server:
            return self.config.api_server.rstrip("/")
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return f"https://{'[' + host + ']' if ':' in host else host}:{port}"

    def _headers(self) -> dict[str, str]:
        token = self.token_file.read_text().strip() if self.token_file.is_file() else ""  # rotated: read each time
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def engines(self) -> list[EngineSpec]:
        specs = []
        for item in self.slices.values():
            role = item.metadata.labels.get(self.config.role_label)
            if role not in ("prefill", "decode") or item.addressType not in ("IPv4", "IPv6"):
                continue
            ports = item.ports or []
            port = next((p.port for p in ports if p.name == self.config.port_name), None)
            if port is None:
                port = next((p.port for p in ports if p.port), None)
            if port is None:
                continue
            for endpoint in item.endpoints or []:
                if endpoint.conditions.ready is False:
                    continue
                for address in endpoint.addresses[:1]:
                    host = f"[{address}]" if ":" in address else address
                    specs.append(
                        EngineSpec(
                            url=f"http://{host}:{port}",
                            role=role,  # type: ignore[arg-type]
                            kv_events=self.kv_events(address, role),  # type: ignore[arg-type]
                        )
                    )
        return sorted(set(specs), key=lambda spec: (spec.role, spec.url))

    async def run(self, on_engines: OnEngines) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=330)) as session:
            while True:
                stage = "list"
                try:
                    version = await self._list(session)
                    on_engines(self.engines())
                    stage = "watch"
                    await self._watch(session, version, on_engines)
                except WatchGone:
                    log.info("endpointslice_watch_expired")
                    continue
                except (aiohttp.ClientError, TimeoutError, ValueError, ValidationError) as error:
                    self._failed(stage, error)
                await asyncio.sleep(self.retry_s)

    def _failed(self, reason: str, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.discovery_failures.labels(SOURCE, reason).inc()
        log.warning(
            "endpointslice_discovery_failed",
            stage=reason,
            reason=repr(error)[:300],
            effect="the engines last listed stay" if reason != "bad_watch_line" else "the line is skipped",
        )

    async def _list(self, session: aiohttp.ClientSession) -> str:
        params = {"labelSelector": self.config.label_selector}
        async with session.get(self.url, params=params, headers=self._headers(), ssl=self.ssl) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=(await response.text())[:200]
                )
            document = await response.json()
        if not isinstance(document, dict):
            raise ValueError(f"the list is a {type(document).__name__}, not an object")
        slices = {}  # the whole list or nothing: a list that fails half-way keeps the engines last listed
        for raw in document.get("items") or []:
            item = EndpointSlice.model_validate(raw)
            slices[item.metadata.name] = item
        self.slices = slices
        return str((document.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, session: aiohttp.ClientSession, version: str, on_engines: OnEngines) -> None:
        params = {
            "labelSelector": self.config.label_selector,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": "300",
        }
        async with session.get(self.url, params=params, headers=self._headers(), ssl=self.ssl) as response:
            if response.status == 410:
                raise WatchGone()
            if response.status != 200:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
            async for line in response.content:
                if line.strip():
                    try:
                        self.apply(_event(line), on_engines)
                    except BadWatchLine as error:
                        self._failed("bad_watch_line", error)

    def apply(self, event: dict[str, Any], on_engines: OnEngines) -> None:
        kind = event.get("type")
        raw = event.get("object") or {}
        if not isinstance(raw, dict):
            raise BadWatchLine(f"the event's object is a {type(raw).__name__}")
        if kind == "ERROR":
            if raw.get("code") == 410:
                raise WatchGone()
            raise ValueError(f"watch error: {str(raw.get('message'))[:200]}")
        if kind == "BOOKMARK":
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise BadWatchLine(f"unknown event type {str(kind)[:50]!r}")
        try:
            item = EndpointSlice.model_validate(raw)
        except ValidationError as error:
            raise BadWatchLine(f"not an EndpointSlice: {error.error_count()} problem(s)") from None
        before = self.engines()
        if kind == "DELETED":
            self.slices.pop(item.metadata.name, None)
        elif kind in ("ADDED", "MODIFIED"):
            self.slices[item.metadata.name] = item
        after = self.engines()
        if after != before:
            on_engines(after)


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise BadWatchLine(f"not JSON: {line[:80]!r}") from None
    if not isinstance(event, dict):
        raise BadWatchLine(f"a {type(event).__name__}, not an event object")
    return event
