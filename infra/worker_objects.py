"""The Kubernetes objects of the prefill and decode workers, rendered from the deployment.

One role gives: a Deployment (one node per replica) or a LeaderWorkerSet (several nodes per replica), a headless
Service whose EndpointSlices the router watches (they carry ``llm-d.ai/role``), and a PodDisruptionBudget. The pod
is the same on both GPU providers; only its node selector differs (EKS node groups label nodes with the EC2 type,
HyperPod with the ``ml.*`` type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from infra.config import Deployment
from runtime.catalog import InstanceSpec, instance_spec
from runtime.config import Role

RoleName = Literal["prefill", "decode"]
APP = "pdstack"
CONFIG_MOUNT = "/etc/pdstack"
CONFIG_FILE = "serving.yaml"
CONFIG_MAP = "pdstack-serving"
# Every worker pod of one deployment carries this label; the REQUIRED same-zone affinity selects it, so prefill and
# decode land in one zone (EFA does not cross zones) and the first pod, matching itself, can always schedule.
PD_GROUP_LABEL = "pdstack.io/pd-group"
GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "sagemaker.amazonaws.com/node-health-status", "operator": "Equal", "value": "Unschedulable",
     "effect": "NoSchedule"},
]
# Host paths of the instance-store NVMe: nodeadm's RAID0 on EKS node groups, the DLAMI mount on HyperPod.
MODEL_CACHE_ROOT = {"eks-nodegroups": "/mnt/k8s-disks/0/pdstack-models", "hyperpod": "/opt/dlami/nvme/pdstack-models"}


@dataclass(frozen=True)
class WorkerLayout:
    """What one worker pod of a role asks of its node."""

    spec: InstanceSpec
    gpus: int
    efa: int
    memory_gib: int
    cpu: int

    @classmethod
    def of(cls, role: Role) -> WorkerLayout:
        spec = instance_spec(role.instance_type)
        share = role.gpus_per_node / spec.gpus
        return cls(
            spec=spec,
            gpus=role.gpus_per_node,
            # EFA interfaces in proportion to the GPUs, at least one: a pod with all GPUs gets every interface.
            efa=max(1, spec.efa_interfaces * role.gpus_per_node // spec.gpus),
            # Leave ~10% of the node to the kubelet, the device plugins and the OS.
            memory_gib=int(spec.memory_gib * 0.9 * share),
            cpu=max(1, int(spec.vcpus * 0.9 * share)),
        )


def labels(deployment: Deployment, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": deployment.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/managed-by": "pdstack-cdk",
    }


def role_labels(deployment: Deployment, role: RoleName) -> dict[str, str]:
    return {**labels(deployment, role), "llm-d.ai/role": role, "llm-d.ai/inference-serving": "true",
            PD_GROUP_LABEL: deployment.name}


def selector(deployment: Deployment, role: RoleName) -> dict[str, str]:
    return {"app.kubernetes.io/instance": deployment.name, "llm-d.ai/role": role}


def worker_name(role: RoleName) -> str:
    return f"{APP}-{role}"


def node_selector(deployment: Deployment, role: Role) -> dict[str, str]:
    spec = instance_spec(role.instance_type)
    instance_type = spec.hyperpod_name if deployment.gpu_provider == "hyperpod" else spec.name
    return {"node.kubernetes.io/instance-type": str(instance_type), "pdstack.io/gpu": "true"}


def worker_pod(deployment: Deployment, role_name: RoleName, image: str) -> dict[str, Any]:
    """The pod template of a worker (the same for a Deployment, an LWS leader and an LWS worker)."""
    role = deployment.serving.role(role_name)
    layout = WorkerLayout.of(role)
    ports = role.ports
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    startup_period = 10
    resources = {
        "nvidia.com/gpu": str(layout.gpus),
        "vpc.amazonaws.com/efa": str(layout.efa),
        "hugepages-2Mi": deployment.workloads.hugepages_2mi,
        "memory": f"{layout.memory_gib}Gi",
    }
    container = {
        "name": role_name,
        "image": image,
        "args": [role_name],  # ENTRYPOINT is python -m runtime
        "env": [
            {"name": "PDSTACK_CONFIG", "value": f"{CONFIG_MOUNT}/{CONFIG_FILE}"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [
            {"name": "http", "containerPort": ports.http, "protocol": "TCP"},
            {"name": "nixl", "containerPort": ports.nixl_side_channel, "protocol": "TCP"},
            {"name": "kv-events", "containerPort": ports.kv_events, "protocol": "TCP"},
        ],
        # Requests equal limits for the extended resources; CPU is requested but never limited (vLLM busy-polls).
        "resources": {"requests": {**resources, "cpu": str(layout.cpu)}, "limits": resources},
        "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
        "startupProbe": {**probe, "periodSeconds": startup_period,
                         "failureThreshold": deployment.workloads.startup_minutes * 60 // startup_period},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "model-cache", "mountPath": deployment.serving.model.cache_dir},
        ],
    }
    return {
        "metadata": {"labels": role_labels(deployment, role_name)},
        "spec": {
            "serviceAccountName": worker_name(role_name),
            "nodeSelector": node_selector(deployment, role),
            "tolerations": GPU_TOLERATIONS,
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {PD_GROUP_LABEL: deployment.name}},
                "topologyKey": "topology.kubernetes.io/zone",
            }]}},
            "terminationGracePeriodSeconds": 120,
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": CONFIG_MAP}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{deployment.workloads.shm_gib}Gi"}},
                {"name": "model-cache",
                 "hostPath": {"path": MODEL_CACHE_ROOT[deployment.gpu_provider], "type": "DirectoryOrCreate"}},
            ],
        },
    }


def worker_controller(deployment: Deployment, role_name: RoleName, image: str,
                      autoscaled: bool = False) -> dict[str, Any]:
    """A Deployment when one node serves a replica, a LeaderWorkerSet when several do. ``autoscaled``: a
    ScaledObject owns the count, so none is rendered (a count here would reset it on every deploy, and a GPU
    replica taken away costs a model load to get back)."""
    role = deployment.serving.role(role_name)
    pod = worker_pod(deployment, role_name, image)
    metadata = {"name": worker_name(role_name), "namespace": deployment.workloads.namespace,
                "labels": role_labels(deployment, role_name)}
    if role.nodes_per_replica == 1:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                **({} if autoscaled else {"replicas": role.replicas}),
                "selector": {"matchLabels": selector(deployment, role_name)},
                # A GPU node holds one replica: replace in place rather than surge onto nodes that do not exist.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": pod,
            },
        }
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": metadata,
        "spec": {
            **({} if autoscaled else {"replicas": role.replicas}),
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 1,
                                                                                        "maxSurge": 0}},
            "leaderWorkerTemplate": {
                "size": role.nodes_per_replica,
                # One failed node breaks the replica's collective: restart the whole group together.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod,
                "workerTemplate": pod,
            },
        },
    }


def worker_service(deployment: Deployment, role_name: RoleName) -> dict[str, Any]:
    """Headless: its EndpointSlices (labelled with the role) are how the router finds every engine pod."""
    role = deployment.serving.role(role_name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": worker_name(role_name), "namespace": deployment.workloads.namespace,
                     "labels": role_labels(deployment, role_name)},
        "spec": {
            "clusterIP": "None",
            "selector": selector(deployment, role_name),
            "ports": [
                {"name": "http", "port": role.ports.http, "targetPort": "http", "protocol": "TCP"},
                {"name": "kv-events", "port": role.ports.kv_events, "targetPort": "kv-events", "protocol": "TCP"},
            ],
        },
    }


def worker_disruption_budget(deployment: Deployment, role_name: RoleName) -> dict[str, Any]:
    """At most one replica (for LWS: one group) down for voluntary disruptions such as node-group upgrades."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": worker_name(role_name), "namespace": deployment.workloads.namespace,
                     "labels": role_labels(deployment, role_name)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(deployment, role_name)}},
    }


def worker_objects(deployment: Deployment, image: str, autoscaled: bool = False) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for role_name in ("prefill", "decode"):
        objects += [
            worker_controller(deployment, role_name, image, autoscaled),
            worker_service(deployment, role_name),
            worker_disruption_budget(deployment, role_name),
        ]
    return objects
