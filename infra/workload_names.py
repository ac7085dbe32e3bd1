"""Names the node pools, the add-ons and the workloads share: node labels, taints and the tolerations derived from
them, the serving config mount and its environment variable, the workloads' object names (controllers, Services,
ServiceAccounts), labels and selectors. Defined here once; every producer and consumer imports them.

The workload names are functions of plain values (the deployment's name, a role), never of the whole Deployment:
infra/config validates with names from here, so taking the Deployment would make the two import each other.

Labels the platform (not pdstack) puts on nodes are here too, each with its source, because pdstack selects on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from runtime.config import CONFIG_ENV
from runtime.roles import Role
from runtime.router.contract import ROLE_LABEL

# --- labels pdstack puts on its nodes (managed node groups and HyperPod instance groups) ------------------------------
POOL_LABEL = "pdstack.io/pool"
SYSTEM_POOL = {POOL_LABEL: "system"}
GPU_LABEL = "pdstack.io/gpu"
EFA_LABEL = "pdstack.io/efa"
NODE_GROUP_LABEL = "pdstack.io/node-group"
# Every GPU node carries these; the device plugins and the workers select on them.
GPU_NODE_LABELS = {GPU_LABEL: "true", EFA_LABEL: "true"}

# The Cluster Autoscaler treats a node carrying this label as a GPU node whose GPUs are still being registered by the
# device plugin, and waits for them instead of adding another node (kubernetes/autoscaler tag
# cluster-autoscaler-1.35.2, cluster-autoscaler/cloudprovider/aws/README.md, "Special note on GPU instances": set by
# kubelet --node-labels, value the GPU type). Scaling from zero, it learns it from the ASG tag
# k8s.io/cluster-autoscaler/node-template/label/<label> (same README, "Auto-discovery setup").
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"


def accelerator_label(gpu_model: str) -> dict[str, str]:
    """The label's value for a catalog GPU model: nvidia-h100, nvidia-h200, nvidia-a100, nvidia-b200."""
    return {ACCELERATOR_LABEL: f"nvidia-{gpu_model.lower()}"}


# --- the router's container ports: its OpenAI API, and /metrics on its own port (serving.router.metrics_port) ------
ROUTER_API_PORT_NAME = "http"
ROUTER_METRICS_PORT_NAME = "metrics"


# --- labels the platform puts on nodes --------------------------------------------------------------------------------
# The kubelet's well-known label (https://kubernetes.io/docs/reference/labels-annotations-taints/): the EC2 name on
# EKS nodes, the ml.* name on HyperPod nodes (aws/sagemaker-hyperpod-cli helm_chart/HyperPodHelmChart/values.yaml at
# 011ca927 selects the device plugins on node.kubernetes.io/instance-type In [ml.p5.48xlarge, ...]).
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# HyperPod's resilience labels and taint (SageMaker developer guide, "Resilience-related Kubernetes labels by SageMaker
# HyperPod", sagemaker-hyperpod-eks-resiliency-node-labels): Schedulable once basic health checks passed; Unschedulable
# while deep health checks run (the node is then also tainted with the same key), Unschedulable* when it failed.
HYPERPOD_HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
HYPERPOD_SCHEDULABLE = {HYPERPOD_HEALTH_LABEL: "Schedulable"}

# --- taints ----------------------------------------------------------------------------------------------------------
GPU_TAINT_KEY = "nvidia.com/gpu"
# Only agents that must run during deep health checks (device plugins, the health agent) tolerate this one.
HYPERPOD_HEALTH_TAINT = {"key": HYPERPOD_HEALTH_LABEL, "value": "Unschedulable", "effect": "NoSchedule"}

# --- the serving workloads: object names, labels, selectors ----------------------------------------------------
APP = "pdstack"
# The router discovers engines by ROLE_LABEL on the EndpointSlices (copied from the Services): imported above from
# its contract.
# Every worker pod of one deployment carries this label; the REQUIRED same-zone affinity selects it, so prefill and
# decode land in one zone (EFA does not cross zones) and the first pod, matching itself, can always schedule.
PD_GROUP_LABEL = "pdstack.io/pd-group"
# The router's Deployment, its ClusterIP Service (what clients and the smoke Job call) and its ServiceAccount.
ROUTER = f"{APP}-router"
ROUTER_API_KEYS = f"{ROUTER}-api-keys"  # the SecretProviderClass and the router pod's volume


def labels(instance: str, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels of every object of the deployment named ``instance``."""
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/managed-by": "pdstack-cdk",
    }


def role_labels(instance: str, role: Role) -> dict[str, str]:
    """A worker's labels: its role (which the router discovers by) and the deployment's P/D group."""
    return {**labels(instance, role), ROLE_LABEL: role, "llm-d.ai/inference-serving": "true", PD_GROUP_LABEL: instance}


def selector(instance: str, role: Role) -> dict[str, str]:
    """The pods of one worker role."""
    return {"app.kubernetes.io/instance": instance, ROLE_LABEL: role}


def router_selector(instance: str) -> dict[str, str]:
    """The router's pods."""
    return {"app.kubernetes.io/instance": instance, "app.kubernetes.io/component": "router"}


def worker_name(role: Role) -> str:
    """The controller (Deployment or LeaderWorkerSet), its ServiceAccount and its disruption budget."""
    return f"{APP}-{role}"


def engines_service_name(role: Role) -> str:
    """The headless Service whose EndpointSlices the router watches. Never the controller's name: a LeaderWorkerSet
    creates its own headless Service under its name (publishing not-ready leaders, which its workers resolve through
    LWS_LEADER_ADDRESS) only when no Service of that name exists."""
    return f"{APP}-{role}-engines"


# --- ports -------------------------------------------------------------------------------------------------------
# Linux's default net.ipv4.ip_local_port_range, "32768 60999" (kernel Documentation/networking/ip-sysctl.rst): the
# source ports of the connections pods open (neither pdstack nor the EKS AMIs change it). The NetworkPolicies admit
# replies there (infra/workloads/network_policies.py), so no pod may listen in it (infra/config/deployment.py refuses
# such a port).
EPHEMERAL_PORTS = range(32768, 61000)

# --- the serving configuration inside every pod -------------------------------------------------------------------
CONFIG_MOUNT = "/etc/pdstack"
CONFIG_FILE = "serving.yaml"
CONFIG_MAP = "pdstack-serving"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_FILE}"
CONFIG_ENV_VAR = {"name": CONFIG_ENV, "value": CONFIG_PATH}
# On every pod template: a digest of the part of that ConfigMap the pod reads (infra/workloads/serving_config.py), so a
# change
# of that part rolls the pod and no other.
CONFIG_HASH_ANNOTATION = "pdstack.io/serving-config-hash"
# The router's API keys (workloads.router.api_keys_secret): the Secrets Store CSI volume holding the secret's value as
# one file, beside (not inside: a configMap volume is read-only) the config mount. serving.router.api_keys_path is
# rendered to this directory; the router reads every file in it and re-reads them when they change.
API_KEYS_MOUNT = "/etc/pdstack-api-keys"
API_KEYS_FILE = "keys"
API_KEYS_SECRET_ANNOTATION = "pdstack.io/api-keys-secret"  # on the router's pod template: the secret it mounts


class _Taint(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def effect(self) -> str: ...


def pod_placement(node_selector: dict[str, str], tolerations: list[dict[str, Any]]) -> dict[str, Any]:
    """A pod spec's nodeSelector and tolerations (the tolerations only when there are some): the same two keys the
    charts pdstack installs take at the top of their values (KEDA, the Cluster Autoscaler, the Load Balancer
    Controller, the AWS secrets provider; the Secrets Store CSI driver under ``linux``)."""
    placement: dict[str, Any] = {"nodeSelector": dict(node_selector)}
    if tolerations:
        placement["tolerations"] = list(tolerations)
    return placement


# Where pdstack's routers and controllers run on a cluster of its own: its system node group, untainted.
SYSTEM_PLACEMENT = pod_placement(SYSTEM_POOL, [])


def tolerations_for(taints: Iterable[_Taint | dict[str, str]]) -> list[dict[str, Any]]:
    """One Equal toleration per distinct configured taint (key, value, effect), in a stable order."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for taint in taints:
        key, value, effect = (
            (taint["key"], taint.get("value", ""), taint["effect"])
            if isinstance(taint, dict)
            else (taint.key, taint.value, taint.effect)
        )
        seen[(key, value, effect)] = {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return [seen[k] for k in sorted(seen)]
