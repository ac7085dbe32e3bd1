"""What Prometheus scrapes, and the labels every pdstack series carries, for the managed collector and the tests.

Two jobs, found with Kubernetes service discovery (pod role) in the workloads' namespace: the router pods
(``router_selector``) and every engine pod (``selector`` of each role, i.e. the ``llm-d.ai/role`` label), each on its
``http`` container port at ``/metrics``. Relabelling gives every series the same target labels, which the dashboards
and alerts group by: ``namespace``, ``pod``, ``model`` (the served model name) and, on engines, ``pd_role``
(prefill | decode). ``pd_role`` is not ``role``: the router's own series already carry a ``role`` label.

Several models (``models``): the same two jobs for each serving unit, in its namespace with its model, named
``<job>-<unit>`` (Prometheus wants distinct job names) and relabelled back to the shared job name, so the dashboards'
and alerts' ``job`` selectors hold and a unit is told apart by ``namespace`` and ``model``.
"""

from __future__ import annotations

import re
from typing import Any

from infra.config import Deployment
from infra.workload_names import router_selector, selector
from infra.workloads.router_objects import router_metrics_port, router_metrics_port_name
from runtime.roles import ROLES

ROUTER_JOB = "pdstack-router"
ENGINE_JOB = "pdstack-engine"
NAMESPACE = "namespace"
POD = "pod"
MODEL = "model"
PD_ROLE = "pd_role"
PORT_NAME = "http"  # the container port the engines serve /metrics on (the router's: router_metrics_port_name)
METRICS_PATH = "/metrics"


def sd_pod_label(key: str) -> str:
    """The meta label Kubernetes service discovery gives a pod label (non-alphanumerics become underscores)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def role_label_key(deployment: Deployment) -> str:
    """The pod label that carries an engine's role, read from the workers' own selector."""
    (key,) = [k for k, v in selector(deployment.name, "prefill").items() if v == "prefill"]
    return key


def _keep(labels: dict[str, str]) -> dict[str, Any]:
    keys = sorted(labels)
    return {
        "action": "keep",
        "source_labels": [sd_pod_label(k) for k in keys],
        "regex": ";".join(labels[k] for k in keys),
    }


def _common(deployment: Deployment, port_name: str = PORT_NAME) -> list[dict[str, Any]]:
    return [
        {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port_name},
        {"action": "keep", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running"},
        {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"], "target_label": NAMESPACE},
        {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"], "target_label": POD},
        {"action": "replace", "target_label": MODEL, "replacement": deployment.serving.model.served_name},
    ]


def scraped_ports(deployment: Deployment) -> dict[str, int]:
    """The port the collector opens on each kind of target: the router's metrics port and each engine role's
    ``http`` port (of a one-model deployment; ``scraped_port_numbers`` for every unit's)."""
    return {
        "router": router_metrics_port(deployment),
        **{role: deployment.serving.role(role).port_ranges()[PORT_NAME].start for role in ROLES},
    }


def scraped_port_numbers(deployment: Deployment) -> set[int]:
    """Every port the collector opens, over every serving unit."""
    return {port for unit in deployment.units for port in scraped_ports(deployment.for_unit(unit)).values()}


def scrape_config(deployment: Deployment) -> dict[str, Any]:
    """The collector's Prometheus configuration (only the sections the AWS managed collector accepts)."""
    interval = f"{deployment.observability.scrape_interval_seconds}s"
    if deployment.several_models:
        jobs = [
            job
            for unit in deployment.units
            for job in unit_scrape_jobs(deployment.for_unit(unit), suffix=f"-{unit.name}")
        ]
    else:
        jobs = unit_scrape_jobs(deployment)
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": "10s",
            "external_labels": {"pdstack_deployment": deployment.whole.name},
        },
        "scrape_configs": jobs,
    }


def unit_scrape_jobs(deployment: Deployment, suffix: str = "") -> list[dict[str, Any]]:
    """The router and engine jobs of one serving unit (``deployment``: the unit's view). With a ``suffix`` each job
    is named apart and relabelled back to the shared job name."""
    sd = [{"role": "pod", "namespaces": {"names": [deployment.workloads.namespace]}}]
    engines = {**selector(deployment.name, "prefill"), role_label_key(deployment): "|".join(ROLES)}
    engines = {k: f"({v})" if "|" in v else v for k, v in engines.items()}

    def shared(job: str) -> list[dict[str, Any]]:
        return [{"action": "replace", "target_label": "job", "replacement": job}] if suffix else []

    return [
        {
            "job_name": ROUTER_JOB + suffix,
            "metrics_path": METRICS_PATH,
            "kubernetes_sd_configs": sd,
            "relabel_configs": [
                _keep(router_selector(deployment.name)),
                *_common(deployment, router_metrics_port_name(deployment)),
                *shared(ROUTER_JOB),
            ],
        },
        {
            "job_name": ENGINE_JOB + suffix,
            "metrics_path": METRICS_PATH,
            "kubernetes_sd_configs": sd,
            "relabel_configs": [
                _keep(engines),
                *_common(deployment),
                {
                    "action": "replace",
                    "source_labels": [sd_pod_label(role_label_key(deployment))],
                    "target_label": PD_ROLE,
                },
                *shared(ENGINE_JOB),
            ],
        },
    ]


def target_labels(namespace: str, pod: str, model: str, pd_role: str | None = None) -> dict[str, str]:
    """The labels a target gets from the relabelling above (what a test's static target must carry too)."""
    labels = {NAMESPACE: namespace, POD: pod, MODEL: model}
    return labels if pd_role is None else {**labels, PD_ROLE: pd_role}
