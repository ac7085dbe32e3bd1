"""What Prometheus scrapes, and the labels every pdstack series carries, for the managed collector and the tests.

Two jobs, found with Kubernetes service discovery (pod role) in the workloads' namespace: the router pods
(``router_selector``) and every engine pod (``selector`` of each role, i.e. the ``llm-d.ai/role`` label), each on its
``http`` container port at ``/metrics``. Relabelling gives every series the same target labels, which the dashboards
and alerts group by: ``namespace``, ``pod``, ``model`` (the served model name) and, on engines, ``pd_role``
(prefill | decode). ``pd_role`` is not ``role``: the router's own series already carry a ``role`` label.
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
    ``http`` port."""
    return {
        "router": router_metrics_port(deployment),
        **{role: deployment.serving.role(role).port_ranges()[PORT_NAME].start for role in ROLES},
    }


def scrape_config(deployment: Deployment) -> dict[str, Any]:
    """The collector's Prometheus configuration (only the sections the AWS managed collector accepts)."""
    interval = f"{deployment.observability.scrape_interval_seconds}s"
    sd = [{"role": "pod", "namespaces": {"names": [deployment.workloads.namespace]}}]
    engines = {**selector(deployment.name, "prefill"), role_label_key(deployment): "|".join(ROLES)}
    engines = {k: f"({v})" if "|" in v else v for k, v in engines.items()}
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": "10s",
            "external_labels": {"pdstack_deployment": deployment.name},
        },
        "scrape_configs": [
            {
                "job_name": ROUTER_JOB,
                "metrics_path": METRICS_PATH,
                "kubernetes_sd_configs": sd,
                "relabel_configs": [
                    _keep(router_selector(deployment.name)),
                    *_common(deployment, router_metrics_port_name(deployment)),
                ],
            },
            {
                "job_name": ENGINE_JOB,
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
                ],
            },
        ],
    }


def target_labels(namespace: str, pod: str, model: str, pd_role: str | None = None) -> dict[str, str]:
    """The labels a target gets from the relabelling above (what a test's static target must carry too)."""
    labels = {NAMESPACE: namespace, POD: pod, MODEL: model}
    return labels if pd_role is None else {**labels, PD_ROLE: pd_role}
