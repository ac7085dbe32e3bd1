"""The operations commands read what the workloads render and what the router exports: names kept in step."""

from __future__ import annotations

from prometheus_client import generate_latest

from infra.config import parse_deployment
from infra.operations.serving_endpoints import (
    ROUTER_DISAGGREGATED_LABEL,
    ROUTER_PD_DECISIONS,
    ServingEndpoints,
)
from infra.workloads.stack import serving_objects
from runtime.router.router_metrics import RouterMetrics
from tests.support.synthesis import load_yaml


def test_default_endpoints_are_the_rendered_services() -> None:
    deployment = parse_deployment(load_yaml("default.yaml"))
    endpoints = ServingEndpoints()
    services = {o["metadata"]["name"]: o for o in serving_objects(deployment, "image:tag") if o["kind"] == "Service"}
    assert endpoints.namespace == deployment.workloads.namespace
    router = services[endpoints.router_service]
    assert endpoints.router_port in {p["port"] for p in router["spec"]["ports"]}
    assert endpoints.router_metrics_port == deployment.serving.router.metrics_port
    assert endpoints.router_metrics_port in {p["port"] for p in router["spec"]["ports"]}
    decode = services[endpoints.decode_service]
    assert endpoints.decode_port in {p["port"] for p in decode["spec"]["ports"]}


def test_the_router_exports_the_decision_counter_smoke_reads() -> None:
    metrics = RouterMetrics()
    metrics.decisions.labels("pd", "threshold").inc()
    text = generate_latest(metrics.registry).decode()
    lines = [line for line in text.splitlines() if line.startswith(ROUTER_PD_DECISIONS + "{")]
    assert any(ROUTER_DISAGGREGATED_LABEL in line and line.endswith(" 1.0") for line in lines), text
