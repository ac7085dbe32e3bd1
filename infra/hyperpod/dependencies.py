"""The part of SageMaker HyperPod's dependency chart that node resiliency needs, as our own typed Kubernetes objects.

AWS ships these in aws/sagemaker-hyperpod-cli's ``helm_chart/HyperPodHelmChart``, which is in no chart repository.
pdstack does not vendor that chart: the device plugins and LeaderWorkerSet come from ClusterAddons (pinned,
tolerating the HyperPod health taint), and the training operators it also installs are not needed for inference.
What resiliency needs is rendered here:

- health-monitoring-agent: a DaemonSet on the GPU nodes that reports hardware faults, so HyperPod marks the node
  ``sagemaker.amazonaws.com/node-health-status=Unschedulable`` and replaces or reboots it (NodeRecovery: Automatic);
- the RBAC HyperPod's deep health checks, job auto-restart and patching use (bound to the HyperPod service-linked
  role's Kubernetes user).

To update: read the chart's ``charts/health-monitoring-agent/values.yaml`` (image tag and the region-to-account
map) and the RBAC templates at a newer commit, change ``HEALTH_AGENT_TAG`` / ``HEALTH_AGENT_ACCOUNTS`` or the rules
below, and run ``make test``. Pinned from aws/sagemaker-hyperpod-cli at 011ca927 (2026-06-22).
"""

from __future__ import annotations

from typing import Any

from infra.gpu_capacity.node_capacity import HEALTH_AGENT_REQUESTS

NAMESPACE = "aws-hyperpod"
HEALTH_AGENT = "health-monitoring-agent"
HEALTH_AGENT_TAG = "1.0.1892.0_1.0.424.0"
HEALTH_AGENT_REPOSITORY = "hyperpod-health-monitoring-agent"
# The ECR account that hosts the agent image in each region (from the chart's values).
HEALTH_AGENT_ACCOUNTS = {
    "us-east-1": "767398015722",
    "us-east-2": "851725546812",
    "us-west-1": "011528288828",
    "us-west-2": "905418368575",
    "ca-central-1": "843976229209",
    "sa-east-1": "025066253954",
    "eu-central-1": "211125453373",
    "eu-north-1": "654654141839",
    "eu-west-1": "533267293120",
    "eu-west-2": "011528288831",
    "eu-south-2": "626887787726",
    "ap-northeast-1": "533267052152",
    "ap-south-1": "011528288864",
    "ap-southeast-1": "905418428165",
    "ap-southeast-2": "851725636348",
    "ap-southeast-3": "971422672635",
    "ap-southeast-4": "084375568333",
}
HYPERPOD_SERVICE_USER = "hyperpod-service-linked-role"


def _meta(name: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "pdstack-hyperpod-dependencies"}}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name, False),
        "rules": rules,
    }


def _binding(name: str, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name, False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [subject],
    }


def _service_account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)}


def _hyperpod_user() -> dict[str, Any]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": HYPERPOD_SERVICE_USER}


# What the agent reserves on every GPU node; the workers' sizing (infra/gpu_capacity/node_capacity.py) subtracts the
# same.
_AGENT_RESOURCES = {"cpu": f"{HEALTH_AGENT_REQUESTS.cpu_m}m", "memory": f"{HEALTH_AGENT_REQUESTS.memory_mib}Mi"}


def health_agent_daemonset(image: str, hyperpod_instance_types: list[str]) -> dict[str, Any]:
    """The agent on every HyperPod GPU node (selected by its ml.* instance type), tolerating every taint."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(HEALTH_AGENT),
        "spec": {
            "selector": {"matchLabels": {"app": HEALTH_AGENT}},
            "template": {
                "metadata": {"labels": {"app": HEALTH_AGENT}},
                "spec": {
                    "serviceAccountName": HEALTH_AGENT,
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "node.kubernetes.io/instance-type",
                                                "operator": "In",
                                                "values": sorted(hyperpod_instance_types),
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": [
                        {"operator": "Exists", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute"},
                    ],
                    "containers": [
                        {
                            "name": HEALTH_AGENT,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "env": [
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                            ],
                            "resources": {"requests": _AGENT_RESOURCES, "limits": _AGENT_RESOURCES},
                            "securityContext": {
                                "runAsUser": 1000,
                                "runAsGroup": 2000,
                                "allowPrivilegeEscalation": False,
                            },
                            "volumeMounts": [
                                {"name": "log", "mountPath": "/var/log"},
                                {"name": "kmsg", "mountPath": "/dev/kmsg", "readOnly": True},
                                {"name": "localtime", "mountPath": "/etc/localtime", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "log", "hostPath": {"path": "/var/log/"}},
                        {"name": "kmsg", "hostPath": {"path": "/dev/kmsg"}},
                        {"name": "localtime", "hostPath": {"path": "/etc/localtime"}},
                    ],
                },
            },
        },
    }


def resiliency_objects(health_agent_image: str, hyperpod_instance_types: list[str]) -> list[dict[str, Any]]:
    """Every object, in apply order (namespace first)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, False)},
        # health-monitoring-agent: reads and marks nodes, records events.
        _service_account(HEALTH_AGENT),
        _cluster_role(
            HEALTH_AGENT,
            [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["patch"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            ],
        ),
        _binding(HEALTH_AGENT, {"kind": "ServiceAccount", "name": HEALTH_AGENT, "namespace": NAMESPACE}),
        health_agent_daemonset(health_agent_image, hyperpod_instance_types),
        # Deep health checks run as this service account.
        _service_account("deep-health-check-service-account"),
        _cluster_role(
            "deep-health-check",
            [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]},
            ],
        ),
        _binding(
            "deep-health-check",
            {"kind": "ServiceAccount", "name": "deep-health-check-service-account", "namespace": NAMESPACE},
        ),
        # Node recovery (reboot/replace) drains pods and marks nodes as HyperPod's service-linked role.
        _cluster_role(
            "hyperpod-node-recovery",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/status", "pods", "pods/status"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "deletecollection"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch"]},
            ],
        ),
        _binding("hyperpod-node-recovery", _hyperpod_user()),
        # Patching evicts pods before it updates a node's AMI.
        _cluster_role(
            "hyperpod-patching",
            [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            ],
        ),
        _binding("hyperpod-patching", _hyperpod_user()),
    ]
