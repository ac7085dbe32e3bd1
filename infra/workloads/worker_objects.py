"""The Kubernetes objects of the prefill and decode workers, rendered from the deployment.

One role gives: a Deployment (one node per replica) or a LeaderWorkerSet (several nodes per replica), a headless
Service whose EndpointSlices the router watches (they carry ``llm-d.ai/role``), and a PodDisruptionBudget. The pod
is the same on both GPU providers; only its node selector differs (EKS node groups label nodes with the EC2 type,
HyperPod with the ``ml.*`` type).
"""

from __future__ import annotations

from typing import Any

from infra.config import Deployment
from infra.gpu_capacity.node_capacity import worker_resources, worker_shm_gib
from infra.workload_names import (
    CONFIG_ENV_VAR,
    CONFIG_HASH_ANNOTATION,
    CONFIG_MAP,
    CONFIG_MOUNT,
    GPU_LABEL,
    HYPERPOD_SCHEDULABLE,
    INSTANCE_TYPE_LABEL,
    NODE_GROUP_LABEL,
    PD_GROUP_LABEL,
    engines_service_name,
    role_labels,
    selector,
    tolerations_for,
    worker_name,
)
from infra.workloads.serving_config import config_hash
from runtime.all2all import GDRDRV_DEVICE, NEEDS_GDRCOPY
from runtime.catalog import instance_spec
from runtime.config import RoleSettings
from runtime.roles import Role

WORKER_PRESTOP_S = 10
ENGINE_PROBE_TIMEOUT_S = 5  # each engine probe's timeoutSeconds (Kubernetes' default is 1)
"""A stopping worker keeps serving this long before vLLM's SIGTERM: its EndpointSlice turns not-ready and every
router replica's discovery drops it, so no new request is sent to an engine that is about to refuse it."""
WORKER_TERMINATION_GRACE_S = 120
"""preStop, then vLLM's --shutdown-timeout (runtime.worker.DRAIN_S) for requests in flight, must fit in this."""
# Host paths of the instance-store NVMe: nodeadm's RAID0 on EKS node groups, the DLAMI mount on HyperPod.
MODEL_CACHE_ROOT = {"eks-nodegroups": "/mnt/k8s-disks/0/pdstack-models", "hyperpod": "/opt/dlami/nvme/pdstack-models"}
# The engine's user: a non-root uid the pod names, so runAsNonRoot holds whatever base image the deployment picks
# (the pinned DLC base runs as root) and the model cache's owner is known.
ENGINE_UID = 2000
ENGINE_GID = 0
# The only capability a worker keeps: EFA (libfabric/ibverbs) registers and pins GPU and host memory for RDMA, which
# needs RLIMIT_MEMLOCK beyond the default or CAP_IPC_LOCK (AWS EFA and llm-d's AWS P/D guide add IPC_LOCK).
ENGINE_CAPABILITIES = ["IPC_LOCK"]
# A read-only root: everything vLLM, Triton, FlashInfer, torch and CUDA write at run time goes to /tmp (the serving
# image, container/Dockerfile, points VLLM_CACHE_ROOT, TRITON_CACHE_DIR, NUMBA_CACHE_DIR and OUTLINES_CACHE_DIR there;
# HOME follows, so ~/.cache and ~/.nv do too) or, for Hugging Face downloads, to the model cache on the NVMe.
SCRATCH_MOUNT = "/tmp"
SCRATCH_GIB = 32


def node_selector(deployment: Deployment, role: RoleSettings) -> dict[str, str]:
    """The role's instance type on a pdstack GPU node; on HyperPod only a node that passed its health checks."""
    spec = instance_spec(role.instance_type)
    if deployment.gpu_provider == "hyperpod":
        return {INSTANCE_TYPE_LABEL: str(spec.hyperpod_name), GPU_LABEL: "true", **HYPERPOD_SCHEDULABLE}
    return {INSTANCE_TYPE_LABEL: spec.name, GPU_LABEL: "true"}


def pool_affinity(deployment: Deployment, role: RoleSettings) -> dict[str, Any]:
    """When some serving unit has GPU pools to itself: the pools of the role's type this unit may use (its own, or
    the shared ones), by their pool label. Without dedicated pools, nothing (the instance type selects)."""
    if not deployment.whole.dedicated_pools:
        return {}
    pools = sorted(p.name for p in deployment.gpu_pools if p.instance_type == role.instance_type)
    term = {"matchExpressions": [{"key": NODE_GROUP_LABEL, "operator": "In", "values": pools}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def worker_tolerations(deployment: Deployment, role: RoleSettings) -> list[dict[str, Any]]:
    """Exactly the taints configured on the pools of the role's instance type the unit may use; never HyperPod's
    health taint, so no worker lands on a node in the middle of deep health checks."""
    return tolerations_for(
        t for pool in deployment.gpu_pools if pool.instance_type == role.instance_type for t in pool.taints
    )


def worker_pod(deployment: Deployment, role_name: Role, image: str) -> dict[str, Any]:
    """The pod template of a worker (the same for a Deployment, an LWS leader and an LWS worker)."""
    role = deployment.serving.role(role_name)
    layout = worker_resources(deployment, role_name)
    ports = role.ports
    cache_dir = deployment.serving.model.cache_dir
    # vLLM answers /health on the API server's event loop, which a heavy batch (long prompts tokenized, large outputs
    # detokenized) holds for more than the 1 s default: readiness then flapped the engine out of its EndpointSlice.
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": ENGINE_PROBE_TIMEOUT_S}
    startup_period = 10
    resources = {
        "nvidia.com/gpu": str(layout.gpus),
        "vpc.amazonaws.com/efa": str(layout.efa),
        "hugepages-2Mi": deployment.workloads.hugepages_2mi,
        "memory": layout.memory,
    }
    container: dict[str, Any] = {
        "name": role_name,
        "image": image,
        "args": [role_name],  # ENTRYPOINT is python -m runtime
        "env": [
            CONFIG_ENV_VAR,
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "HOME", "value": SCRATCH_MOUNT},
            {"name": "HF_HOME", "value": f"{cache_dir}/huggingface"},
            {"name": "TRANSFORMERS_CACHE", "value": f"{cache_dir}/huggingface/hub"},
        ],
        "ports": [
            {"name": "http", "containerPort": ports.http, "protocol": "TCP"},
            {"name": "nixl", "containerPort": ports.nixl_side_channel, "protocol": "TCP"},
            {"name": "kv-events", "containerPort": ports.kv_events, "protocol": "TCP"},
        ],
        # Requests equal limits for the extended resources; CPU is requested but never limited (vLLM busy-polls).
        "resources": {"requests": {**resources, "cpu": layout.cpu}, "limits": resources},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ENGINE_CAPABILITIES},
        },
        "startupProbe": {
            **probe,
            "periodSeconds": startup_period,
            "failureThreshold": deployment.workloads.startup_minutes * 60 // startup_period,
        },
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "lifecycle": {"preStop": {"sleep": {"seconds": WORKER_PRESTOP_S}}},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "scratch", "mountPath": SCRATCH_MOUNT},
            {"name": "model-cache", "mountPath": cache_dir},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": CONFIG_MAP}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{worker_shm_gib(deployment, role_name)}Gi"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{SCRATCH_GIB}Gi"}},
        {
            "name": "model-cache",
            "hostPath": {"path": MODEL_CACHE_ROOT[deployment.gpu_provider], "type": "DirectoryOrCreate"},
        },
    ]
    if role.expert_parallel and role.all2all_backend in NEEDS_GDRCOPY:
        # aws-ofi-nccl's GIN opens a gdrcopy handle (runtime/all2all.py [DEEPEP-V2]). CharDevice: the pod does not
        # start on a node without the gdrdrv module. Preflight opens the device (the container's device access decides).
        volumes.append({"name": "gdrdrv", "hostPath": {"path": GDRDRV_DEVICE, "type": "CharDevice"}})
        container["volumeMounts"].append({"name": "gdrdrv", "mountPath": GDRDRV_DEVICE})
    return {
        "metadata": {
            "labels": role_labels(deployment.name, role_name),
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash(deployment, role_name)},
        },
        "spec": {
            "serviceAccountName": worker_name(role_name),
            "nodeSelector": node_selector(deployment, role),
            "tolerations": worker_tolerations(deployment, role),
            "affinity": {
                **pool_affinity(deployment, role),
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {PD_GROUP_LABEL: deployment.name}},
                            "topologyKey": "topology.kubernetes.io/zone",
                        }
                    ]
                },
            },
            "terminationGracePeriodSeconds": WORKER_TERMINATION_GRACE_S,
            # Workers never call the Kubernetes API. Pod Identity does not need the API token: its webhook adds its
            # own projected token (audience pods.eks.amazonaws.com; aws/amazon-eks-pod-identity-webhook).
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": ENGINE_UID,
                "runAsGroup": ENGINE_GID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [model_cache_owner(deployment, image)],
            "containers": [container],
            "volumes": volumes,
        },
    }


def model_cache_owner(deployment: Deployment, image: str) -> dict[str, Any]:
    """The init container that hands the node's model cache to the engine user. The kubelet creates a missing
    hostPath directory as root, mode 0755 (hostPath DirectoryOrCreate), so the non-root engine could not write the
    model there; fsGroup does not apply to hostPath. This container is root with CHOWN alone and runs one chown."""
    cache_dir = deployment.serving.model.cache_dir
    return {
        "name": "model-cache-owner",
        "image": image,
        "command": ["chown", f"{ENGINE_UID}:{ENGINE_GID}", cache_dir],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {
            "runAsNonRoot": False,
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
        },
        "volumeMounts": [{"name": "model-cache", "mountPath": cache_dir}],
    }


def worker_controller(deployment: Deployment, role_name: Role, image: str, autoscaled: bool = False) -> dict[str, Any]:
    """A Deployment when one node serves a replica, a LeaderWorkerSet when several do. ``autoscaled``: a
    ScaledObject owns the count, so none is rendered (a count here would reset it on every deploy, and a GPU
    replica taken away costs a model load to get back)."""
    role = deployment.serving.role(role_name)
    pod = worker_pod(deployment, role_name, image)
    metadata = {
        "name": worker_name(role_name),
        "namespace": deployment.workloads.namespace,
        "labels": role_labels(deployment.name, role_name),
    }
    if role.nodes_per_replica == 1:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                **({} if autoscaled else {"replicas": role.replicas}),
                "selector": {"matchLabels": selector(deployment.name, role_name)},
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
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "leaderWorkerTemplate": {
                "size": role.nodes_per_replica,
                # One failed node breaks the replica's collective: restart the whole group together.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod,
                "workerTemplate": pod,
            },
        },
    }


def worker_service(deployment: Deployment, role_name: Role) -> dict[str, Any]:
    """Headless: its EndpointSlices (labelled with the role) are how the router finds every engine pod."""
    role = deployment.serving.role(role_name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": engines_service_name(role_name),
            "namespace": deployment.workloads.namespace,
            "labels": role_labels(deployment.name, role_name),
        },
        "spec": {
            "clusterIP": "None",
            "selector": selector(deployment.name, role_name),
            "ports": [
                {"name": "http", "port": role.ports.http, "targetPort": "http", "protocol": "TCP"},
                {"name": "kv-events", "port": role.ports.kv_events, "targetPort": "kv-events", "protocol": "TCP"},
            ],
        },
    }


def worker_disruption_budget(deployment: Deployment, role_name: Role) -> dict[str, Any]:
    """At most one replica (for LWS: one group) down for voluntary disruptions such as node-group upgrades."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": worker_name(role_name),
            "namespace": deployment.workloads.namespace,
            "labels": role_labels(deployment.name, role_name),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(deployment.name, role_name)}},
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
