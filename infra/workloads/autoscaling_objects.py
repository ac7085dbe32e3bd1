"""The autoscaling objects, rendered from the deployment: one KEDA ScaledObject per role and the TriggerAuthentication
they share, with the PromQL each evaluates against the metrics workspace.

One pipeline: the AWS managed collector scrapes the routers and the engines into an Amazon Managed Service for
Prometheus workspace; KEDA's prometheus trigger queries it with SigV4, as the keda-operator's EKS Pod Identity role.

Signals (README: Autoscaling), and why several router replicas give one answer:
  prefill  sum over router replicas of pdstack_router_prefill_backlog_seconds (each replica counts only the
           requests it routed, so the sum is the cluster's backlog), target: the share of the TTFT SLO a prompt may
           wait, per prefill replica.
  decode   sum of vllm:kv_cache_usage_perc over the decode engines (the engines' own gauges: every replica of the
           router would report the same, so they are read at the source), target ``decode_kv_usage`` per replica;
           and the requests waiting for decode, at the engines (vllm:num_requests_waiting) or at the routers'
           admission queues (summed), target half the router's saturation limit per replica.
KEDA hands these to the HPA as external metrics of type AverageValue: desired = ceil(value / target), the HPA's
formula, inside [min, max]; with several triggers the HPA takes the largest.

Facts this file relies on, with their source:
  - KEDA 2.20.2 (chart keda 2.20.2, kedacore/charts): the prometheus scaler signs requests with SigV4 when the
    trigger has ``awsRegion`` and its TriggerAuthentication ``podIdentity.provider: aws``, using the operator's own
    credentials (pkg/scalers/aws/aws_sigv4.go, aws_common.go GetAwsAuthorization); it queries
    ``<serverAddress>/api/v1/query``, so the address is the workspace URL without a trailing slash.
  - LeaderWorkerSet v0.10.0 CRD: the scale subresource is ``.spec.replicas`` (groups), selector
    ``.status.hpaPodSelector``: a ScaledObject on it adds or removes whole groups.
  - vLLM 0.32: ``vllm:kv_cache_usage_perc`` is 0..1 ("1 means 100 percent usage"), ``vllm:num_requests_waiting``
    a gauge (names pinned in infra/observability/vllm_metrics.py; the series labels in targets.py, the collector's).
  - Kubernetes: an HPA stabilization window is at most 3600 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from infra.config import Deployment
from infra.observability.targets import NAMESPACE as NAMESPACE_LABEL
from infra.observability.targets import PD_ROLE as ENGINE_ROLE_LABEL
from infra.observability.vllm_metrics import KV_CACHE_USAGE as KV_USAGE
from infra.observability.vllm_metrics import NUM_REQUESTS_WAITING as ENGINE_WAITING
from infra.workload_names import labels, worker_name
from runtime.roles import Role
from runtime.router.contract import ADMISSION_QUEUE_DEPTH, PREFILL_BACKLOG

KEDA_API = "keda.sh/v1alpha1"
TRIGGER_AUTHENTICATION = "pdstack-metrics-workspace"
MAX_STABILIZATION_S = 3600
ACTIVATION_SHARE = 0.2
"""Prefill wakes from zero when the backlog passes this share of one replica's target (not on a single prompt)."""


@dataclass(frozen=True)
class ScalingTrigger:
    """One PromQL query and its per-replica target (HPA AverageValue)."""

    name: str
    query: str
    target: float
    activation: float = 0.0


@dataclass(frozen=True)
class PrometheusServer:
    """Where KEDA reads the signals: the workspace's Prometheus API root without the trailing slash (KEDA appends
    /api/v1/query) and its region."""

    server_address: str
    region: str


def scaling_triggers(deployment: Deployment, role: Role) -> list[ScalingTrigger]:
    namespace = f'{NAMESPACE_LABEL}="{deployment.workloads.namespace}"'
    if role == "prefill":
        target = deployment.slo.ttft_seconds * deployment.autoscaling.prefill_ttft_share
        return [
            ScalingTrigger(
                "prefill_backlog_seconds",
                f"sum({PREFILL_BACKLOG}{{{namespace}}})",
                target,
                activation=round(target * ACTIVATION_SHARE, 3),
            )
        ]
    decode = f'{namespace},{ENGINE_ROLE_LABEL}="decode"'
    waiting_target = max(1.0, deployment.serving.router.saturation.max_waiting / 2)
    return [
        ScalingTrigger("decode_kv_usage", f"sum({KV_USAGE}{{{decode}}})", deployment.autoscaling.decode_kv_usage),
        ScalingTrigger(
            "decode_waiting_requests",
            f"(sum({ENGINE_WAITING}{{{decode}}}) or vector(0)) + "
            f"(sum({ADMISSION_QUEUE_DEPTH}{{{namespace}}}) or vector(0))",
            waiting_target,
        ),
    ]


def desired_replicas(
    value: float, target: float, current: int, minimum: int, maximum: int, tolerance: float = 0.1
) -> int:
    """What the HPA computes from one AverageValue external metric (kube-controller-manager's replica calculator:
    no change within the 10% tolerance of the current usage ratio), clamped to the bounds KEDA sets."""
    if current > 0 and abs(value / (target * current) - 1.0) <= tolerance:
        return max(minimum, min(maximum, current))
    return max(minimum, min(maximum, math.ceil(value / target)))


def trigger_authentication(deployment: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": {
            "name": TRIGGER_AUTHENTICATION,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "autoscaling"),
        },
        # The operator's own Pod Identity credentials sign the queries (no role to assume, no secret).
        "spec": {"podIdentity": {"provider": "aws"}},
    }


def scaled_object(deployment: Deployment, role_name: Role, workspace: PrometheusServer) -> dict[str, Any]:
    role = deployment.serving.role(role_name)
    bounds = getattr(deployment.autoscaling, role_name)
    load_s = deployment.workloads.startup_minutes * 60
    # Giving a replica back costs a model load to get it again: hold the peak for as long as a load takes.
    hold_s = min(load_s, MAX_STABILIZATION_S)
    target = (
        {"apiVersion": "apps/v1", "kind": "Deployment"}
        if role.nodes_per_replica == 1
        else {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"}
    )
    spec: dict[str, Any] = {
        "scaleTargetRef": {**target, "name": worker_name(role_name)},
        "minReplicaCount": bounds.min_replicas,
        "maxReplicaCount": deployment.max_replicas(role_name),
        "pollingInterval": deployment.autoscaling.polling_interval_s,
        # If the workspace cannot answer three polls running: the configured count, or more if running more.
        "fallback": {"failureThreshold": 3, "replicas": role.replicas, "behavior": "currentReplicasIfHigher"},
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": hold_s,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                    },
                }
            }
        },
        "triggers": [
            {
                "type": "prometheus",
                "name": trigger.name,
                "metricType": "AverageValue",
                "authenticationRef": {"name": TRIGGER_AUTHENTICATION},
                "metadata": {
                    "serverAddress": workspace.server_address,
                    "awsRegion": workspace.region,
                    "query": trigger.query,
                    "threshold": _number(trigger.target),
                    "activationThreshold": _number(trigger.activation),
                    "ignoreNullValues": "false",
                },
            }
            for trigger in scaling_triggers(deployment, role_name)
        ],
    }
    if bounds.min_replicas == 0:
        # To zero only after a model load's worth of quiet, and not while the first replica is still loading.
        spec["cooldownPeriod"] = load_s
        spec["initialCooldownPeriod"] = load_s
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": {
            "name": worker_name(role_name),
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "autoscaling"),
        },
        "spec": spec,
    }


def autoscaling_objects(deployment: Deployment, workspace: PrometheusServer) -> list[dict[str, Any]]:
    if not deployment.autoscaled:
        return []
    return [
        trigger_authentication(deployment),
        *(scaled_object(deployment, role, workspace) for role in ("prefill", "decode")),
    ]


def _number(value: float) -> str:
    """KEDA's trigger metadata is strings; no exponent notation."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"
