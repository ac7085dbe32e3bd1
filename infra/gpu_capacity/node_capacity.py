"""What a node really offers the pods pdstack schedules on it, and what each worker and router pod may ask for.

Allocatable = capacity - kube-reserved - eviction threshold - hugepages reserved at boot (memory) - the requests of
the DaemonSets every node of that kind runs. Capacity counts logical CPUs: the catalog lists vCPUs with two threads
per core (EKS node groups keep the default); a HyperPod group with ``threads_per_core: 1`` has half of them (SageMaker
API ``ClusterInstanceGroupSpecification.ThreadsPerCore``: 96 on ml.p5.48xlarge).

The config loader (infra/config/) sizes nothing itself but refuses layouts that do not fit by these rules; the
workers (infra/workloads/worker_objects.py) take their requests from them; the rehearsal in
tests/infra/test_schedulability.py places every pod of the synthesized templates on nodes built from the same rules and
the charts' pinned facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.catalog import INSTANCE_CATALOG, InstanceSpec
from runtime.kv_offload import host_tier_gib_per_pod
from runtime.roles import ROLES, Role

if TYPE_CHECKING:
    from infra.config import Deployment
    from infra.config.workloads import RouterWorkload

# --- kube-reserved and eviction, as the EKS AMI's nodeadm sets them ---------------------------------------------------
# awslabs/amazon-eks-ami nodeadm/internal/kubelet/config.go ``getCPUMillicoresToReserve``: 6% of the first core, 1% of
# the second, 0.5% of the next two, 0.25% of the rest (bands of millicores, shares in 1/10000);
# ``getMemoryMebibytesToReserve``: 11 MiB per pod of maxPods plus 255 MiB. maxPods from
# nodeadm/internal/kubelet/eni-max-pods.txt (ENIs x (IPv4 per ENI - 1) + 2, from network card 0). The kubelet's
# hard eviction threshold memory.available<100Mi (the kubelet default, which nodeadm keeps) is also held back.
CPU_RESERVE_BANDS = ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, None, 25))
MEMORY_RESERVE_PER_POD_MIB = 11
MEMORY_RESERVE_BASE_MIB = 255
EVICTION_HARD_MEMORY_MIB = 100
# HyperPod's EKS nodes run the same kubelet settings (its AMI is built on the EKS-optimized accelerated AMI).
ENI_MAX_PODS = {
    "m7i.large": 29,
    "m7i.xlarge": 58,
    "m7i.2xlarge": 58,
    "m7i.4xlarge": 234,
    "m6i.xlarge": 58,
    "m6i.2xlarge": 58,
    "p4d.24xlarge": 737,
    "p5.48xlarge": 100,
    "p5e.48xlarge": 100,
    "p5en.48xlarge": 198,
    "p6-b200.48xlarge": 198,
}
# The kernel and firmware keep part of the installed memory out of MemTotal, which is what the kubelet reports as
# capacity; an allowance, not a fact read from a source: lower it only with a node's `kubectl describe node`.
UNREPORTED_MEMORY_FRACTION = 0.03

# System node types pdstack can size the router for: (vCPUs, memory GiB), EC2 general purpose instance
# specifications (docs.aws.amazon.com/ec2/latest/instancetypes/gp.html).
SYSTEM_INSTANCE_TYPES = {
    "m7i.large": (2, 8),
    "m7i.xlarge": (4, 16),
    "m7i.2xlarge": (8, 32),
    "m7i.4xlarge": (16, 64),
    "m6i.xlarge": (4, 16),
    "m6i.2xlarge": (8, 32),
}


@dataclass(frozen=True)
class Requests:
    cpu_m: int
    memory_mib: int

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_m + other.cpu_m, self.memory_mib + other.memory_mib)


# --- the DaemonSets on every node, by where they run (requests per pod) -----------------------------------------------
# Read from a source: aws-node (aws/amazon-vpc-cni-k8s charts/aws-vpc-cni/values.yaml resources.requests.cpu 25m),
# eks-pod-identity-agent (aws/eks-pod-identity-agent charts/eks-pod-identity-agent/values.yaml: resources {}).
# Allowances, not read from a pinned source here: kube-proxy 100m (what the EKS add-on's DaemonSet is commonly seen
# to request) and ebs-csi-node 3 x 10m/40Mi; check both with `kubectl -n kube-system get ds -o yaml` on a cluster.
# Re-read all of them when a pin in infra/cluster/addons.py moves.
EVERY_NODE_DAEMONSETS = {
    "aws-node": Requests(25, 0),
    "kube-proxy": Requests(100, 0),
    "ebs-csi-node": Requests(30, 120),
    "eks-pod-identity-agent": Requests(0, 0),
}
# On the system nodes, when the routers mount their API keys (workloads.router.api_keys_secret): the Secrets Store CSI
# driver (chart 1.6.0 values linux.driver/registrar/livenessProbe.resources.requests 50m/100Mi + 10m/20Mi +
# 10m/20Mi) and the AWS provider (chart 3.1.1 values resources.requests 50m/100Mi); the rehearsal checks these
# against the charts' facts (tests/infra/chart_facts.py).
SECRETS_STORE_DAEMONSETS = {
    "secrets-store-csi-driver": Requests(70, 140),
    "secrets-store-csi-driver-provider-aws": Requests(50, 100),
}
# On GPU nodes: the NVIDIA device plugin (chart 0.20.0 values resources {}) and the EFA device plugin (an allowance:
# its chart's values carry no requests we rely on).
GPU_NODE_DAEMONSETS = {"nvidia-device-plugin": Requests(0, 0), "aws-efa-k8s-device-plugin": Requests(10, 20)}
# On HyperPod GPU nodes: the health-monitoring agent pdstack renders (infra/hyperpod/dependencies.py uses this).
HEALTH_AGENT_REQUESTS = Requests(500, 512)

# --- the controllers on the system nodes (Deployments, requests per replica x replicas) -------------------------------
# lws-controller-manager: kubernetes-sigs/lws charts/lws/values.yaml resources.requests cpu 1, memory 1Gi, one replica
# (tests/infra/chart_facts.py; the rehearsal checks the two agree); allowances for the EKS add-ons' Deployments:
# coredns 2 x 100m/70Mi, ebs-csi-controller 2 replicas of six containers at 10m/40Mi;
# KEDA (chart 2.20.2 values resources.{operator,metricServer,webhooks}.requests 100m/100Mi each) when autoscaled;
# cluster-autoscaler: chart 9.53.0 values resources {}.
SYSTEM_CONTROLLERS = {
    "lws-controller-manager": Requests(1000, 1024),
    "coredns": Requests(200, 140),
    "ebs-csi-controller": Requests(120, 480),
}
KEDA_CONTROLLERS = {
    "keda-operator": Requests(100, 100),
    "keda-operator-metrics-apiserver": Requests(100, 100),
    "keda-admission-webhooks": Requests(100, 100),
}
# The AWS Load Balancer Controller when workloads.router.internal_load_balancer is on
# (infra/cluster/load_balancer_controller.py
# sets these): chart 3.5.0 values replicaCount 2 and resources {} (no requests), so pdstack sets the values file's
# own commented example, 100m / 128Mi, per replica.
LOAD_BALANCER_CONTROLLER_REPLICAS = 2
LOAD_BALANCER_CONTROLLER_REQUESTS = Requests(100, 128)
LOAD_BALANCER_CONTROLLERS = {
    f"aws-load-balancer-controller-{i}": LOAD_BALANCER_CONTROLLER_REQUESTS
    for i in range(LOAD_BALANCER_CONTROLLER_REPLICAS)
}


def kube_reserved_cpu_m(logical_cpus: int) -> int:
    total = logical_cpus * 1000
    reserved = 0
    for start, end, share in CPU_RESERVE_BANDS:
        if total > start:
            reserved += ((min(total, end) if end is not None else total) - start) * share // 10000
    return reserved


def kube_reserved_memory_mib(instance_type: str) -> int:
    return MEMORY_RESERVE_PER_POD_MIB * ENI_MAX_PODS[instance_type] + MEMORY_RESERVE_BASE_MIB


def _sum(requests: dict[str, Requests]) -> Requests:
    total = Requests(0, 0)
    for r in requests.values():
        total += r
    return total


@dataclass(frozen=True)
class NodeBudget:
    """What the pods pdstack schedules may request on one node, after the kubelet and every DaemonSet."""

    instance_type: str
    logical_cpus: int
    cpu_m: int
    memory_mib: int
    hugepages_mib: int


def logical_cpus(spec: InstanceSpec, threads_per_core: int) -> int:
    return spec.vcpus * threads_per_core // 2


def gpu_node_threads_per_core(deployment: Deployment, instance_type: str) -> int:
    """The fewest threads per core among the pools of the type (a HyperPod group's setting; 2 on EKS node groups)."""
    if deployment.gpu_provider != "hyperpod":
        return 2
    return min(getattr(p, "threads_per_core", 2) for p in deployment.gpu_pools if p.instance_type == instance_type)


def hugepages_2mi_pages_per_node(deployment: Deployment, instance_type: str) -> int:
    """2 MiB pages a node of ``instance_type`` must reserve: the per-pod request times the most worker pods one node
    can hold (all GPUs used by the role with the smallest share), the most any serving unit's role needs (the
    pools are shared); 0 where no role runs on the type."""
    pages = [0]
    for unit in deployment.whole.units:
        quantity = unit.workloads.hugepages_2mi  # "<n>Mi" or "<n>Gi" (the config's pattern)
        per_pod = int(quantity[:-2]) * {"Mi": 1, "Gi": 1024}[quantity[-2:]] // 2
        pages += [
            per_pod * (INSTANCE_CATALOG[instance_type].gpus // role.gpus_per_node)
            for role in (unit.serving.prefill, unit.serving.decode)
            if role.instance_type == instance_type
        ]
    return max(pages)


def reserved_hugepages_2mi_pages(deployment: Deployment, instance_type: str) -> int:
    """What the node's boot configuration reserves: per type on EKS node groups; HyperPod's lifecycle script reserves
    one count (the largest any type needs) on every instance."""
    if deployment.gpu_provider == "hyperpod":
        return max(hugepages_2mi_pages_per_node(deployment, p.instance_type) for p in deployment.whole.gpu_pools)
    return hugepages_2mi_pages_per_node(deployment, instance_type)


def gpu_daemonsets(deployment: Deployment) -> dict[str, Requests]:
    every = {**EVERY_NODE_DAEMONSETS, **GPU_NODE_DAEMONSETS}
    if deployment.gpu_provider == "hyperpod":
        every["health-monitoring-agent"] = HEALTH_AGENT_REQUESTS
    return every


def gpu_node_budget(deployment: Deployment, instance_type: str) -> NodeBudget:
    spec = INSTANCE_CATALOG[instance_type]
    cpus = logical_cpus(spec, gpu_node_threads_per_core(deployment, instance_type))
    hugepages_mib = reserved_hugepages_2mi_pages(deployment, instance_type) * 2
    daemonsets = _sum(gpu_daemonsets(deployment))
    reported = int(spec.memory_gib * 1024 * (1 - UNREPORTED_MEMORY_FRACTION))
    memory = (
        reported
        - kube_reserved_memory_mib(instance_type)
        - EVICTION_HARD_MEMORY_MIB
        - hugepages_mib
        - daemonsets.memory_mib
    )
    return NodeBudget(
        instance_type, cpus, cpus * 1000 - kube_reserved_cpu_m(cpus) - daemonsets.cpu_m, memory, hugepages_mib
    )


def system_daemonsets(deployment: Deployment) -> dict[str, Requests]:
    """The DaemonSets on every system node: those of every node, and the secrets store when the routers mount keys."""
    every = dict(EVERY_NODE_DAEMONSETS)
    if any(unit.workloads.router.api_keys_secret is not None for unit in deployment.whole.units):
        every.update(SECRETS_STORE_DAEMONSETS)  # the platform's own driver, where it runs one, is counted as ours
    return every


def system_node_budget(deployment: Deployment) -> NodeBudget:
    instance_type = deployment.system_instance_type
    vcpus, memory_gib = SYSTEM_INSTANCE_TYPES[instance_type]
    daemonsets = _sum(system_daemonsets(deployment))
    reported = int(memory_gib * 1024 * (1 - UNREPORTED_MEMORY_FRACTION))
    memory = reported - kube_reserved_memory_mib(instance_type) - EVICTION_HARD_MEMORY_MIB - daemonsets.memory_mib
    return NodeBudget(instance_type, vcpus, vcpus * 1000 - kube_reserved_cpu_m(vcpus) - daemonsets.cpu_m, memory, 0)


def system_controllers(deployment: Deployment) -> dict[str, Requests]:
    """The cluster's controllers on the system nodes, one of each, whichever units need them: pdstack's add-ons where
    it installs them, and the EKS add-ons' (counted on an existing cluster's nodes too: they run somewhere there)."""
    whole = deployment.whole
    views = [whole.for_unit(unit) for unit in whole.units]
    addons = deployment.cluster.addons
    controllers = dict(SYSTEM_CONTROLLERS)
    if addons.leader_worker_set == "platform":
        del controllers["lws-controller-manager"]
    if any(view.autoscaled for view in views) and addons.keda == "pdstack":
        controllers.update(KEDA_CONTROLLERS)
    if any(view.workloads.router.internal_load_balancer for view in views) and (
        addons.load_balancer_controller == "pdstack"
    ):
        controllers.update(LOAD_BALANCER_CONTROLLERS)
    return controllers


@dataclass(frozen=True)
class WorkerResources:
    """What one worker pod of a role asks of its node: its share (GPUs over the node's GPUs) of the budget."""

    gpus: int
    efa: int
    cpu_m: int
    memory_mib: int

    @property
    def cpu(self) -> str:
        return f"{self.cpu_m}m"

    @property
    def memory(self) -> str:
        return f"{self.memory_mib}Mi"


def worker_resources(deployment: Deployment, role_name: Role) -> WorkerResources:
    role = deployment.serving.role(role_name)
    spec = INSTANCE_CATALOG[role.instance_type]
    budget = gpu_node_budget(deployment, role.instance_type)
    pods_per_node = spec.gpus // role.gpus_per_node
    return WorkerResources(
        gpus=role.gpus_per_node,
        # EFA interfaces in proportion to the GPUs, at least one: a pod with all GPUs gets every interface.
        efa=max(1, spec.efa_interfaces * role.gpus_per_node // spec.gpus),
        cpu_m=budget.cpu_m // pods_per_node,
        memory_mib=budget.memory_mib // pods_per_node,
    )


# The vLLM processes' own host memory beside /dev/shm and the host KV tier (Python, the CUDA context, pinned staging
# buffers, the tokenizer): an allowance per GPU of the worker, not a fact read from a source; only the host tier's
# check adds it (a worker without a tier keeps its whole share, as before). Lower it only with a measured RSS.
WORKER_PROCESS_ALLOWANCE_GIB = 8


def worker_shm_gib(deployment: Deployment, role_name: Role) -> int:
    """A worker's memory-backed /dev/shm: ``workloads.shm_gib`` and the host KV tier of each engine in the pod (vLLM
    0.32 maps the tier's buffer in /dev/shm on CUDA: runtime/kv_offload.py), both inside the pod's memory limit."""
    role = deployment.serving.role(role_name)
    tier = host_tier_gib_per_pod(deployment.serving.kv_cache.host_offload_gib, role.data_parallel_local)
    return deployment.workloads.shm_gib + tier


def parse_cpu_m(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def parse_memory_mib(quantity: str) -> int:
    for suffix, factor in (("Mi", 1), ("Gi", 1024), ("Ki", 1 / 1024)):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity) // 2**20


def capacity_problems(deployment: Deployment) -> list[str]:
    """Why the configured layout does not fit the nodes (empty: it fits), in the config file's terms: every unit's
    workers on the nodes of their type, every unit's routers on the system nodes."""
    problems = []
    for unit in deployment.units:
        problems += [unit.where(p) for p in worker_problems(deployment.for_unit(unit))]
    return problems + router_problems(deployment)


def worker_problems(deployment: Deployment) -> list[str]:
    """Why one unit's workers do not fit their nodes."""
    problems = []
    for role_name in ROLES:
        role = deployment.serving.role(role_name)
        budget = gpu_node_budget(deployment, role.instance_type)
        worker = worker_resources(deployment, role_name)
        where = (
            f"a {role.instance_type} node ({budget.logical_cpus} logical CPUs"
            + (", threads_per_core 1" if budget.logical_cpus < INSTANCE_CATALOG[role.instance_type].vcpus else "")
            + ")"
        )
        if worker.cpu_m < 1000 * role.gpus_per_node:
            problems.append(
                f"serving.{role_name}: {worker.cpu_m}m CPU per worker on {where} after kube-reserved "
                "and the DaemonSets is less than one CPU per GPU"
            )
        if deployment.workloads.shm_gib * 1024 >= worker.memory_mib:
            problems.append(
                f"workloads.shm_gib={deployment.workloads.shm_gib} does not fit in the "
                f"{worker.memory_mib}Mi a serving.{role_name} worker may use on {where} (hugepages "
                f"{budget.hugepages_mib}Mi reserved per node)"
            )
        problems += host_tier_problems(deployment, role_name, worker, where)
    return problems


def host_tier_problems(deployment: Deployment, role_name: Role, worker: WorkerResources, where: str) -> list[str]:
    """The host KV tier of the worker's engines, its /dev/shm and the vLLM processes must fit the worker's memory."""
    role = deployment.serving.role(role_name)
    gib = deployment.serving.kv_cache.host_offload_gib
    engines = role.data_parallel_local
    tier = host_tier_gib_per_pod(gib, engines)
    if not tier:
        return []
    shm = deployment.workloads.shm_gib
    allowance = WORKER_PROCESS_ALLOWANCE_GIB * role.gpus_per_node
    need = shm + tier + allowance
    if need * 1024 <= worker.memory_mib:
        return []
    room = max((worker.memory_mib // 1024 - shm - allowance) // engines, 0)
    problem = (
        f"serving.kv_cache.host_offload_gib={gib:g}: a serving.{role_name} worker's host KV tier ({engines} engine(s) "
        f"x {gib:g} GiB = {tier} GiB) with workloads.shm_gib={shm} and {allowance} GiB for the vLLM processes "
        f"({WORKER_PROCESS_ALLOWANCE_GIB} GiB per GPU) needs {need} GiB, more than the {worker.memory_mib}Mi a worker "
        f"may use on {where}; at most {room} GiB per engine fits"
    )
    return [problem]


def router_problems(deployment: Deployment) -> list[str]:
    """The routers of every unit, one more during a surging rollout, and the controllers must fit the system nodes,
    each unit's routers under their own hostname spread (maxSkew 1, DoNotSchedule)."""
    existing = deployment.cluster.existing
    field = "cluster.existing.system_nodes.instance_type" if existing else "cluster.system_instance_type"
    count_field = "cluster.existing.system_nodes.count" if existing else "cluster.system_node_count"
    instance_type, count = deployment.system_instance_type, deployment.system_node_count
    if instance_type not in SYSTEM_INSTANCE_TYPES:
        return [
            (
                f"{field}={instance_type!r}: pdstack sizes the system nodes for "
                f"{', '.join(sorted(SYSTEM_INSTANCE_TYPES))}"
            )
        ]
    units = deployment.units
    groups = [
        RouterGroup(router_pods_during_rollout(unit.workloads.router.replicas), router_requests(unit.workloads.router))
        for unit in units
    ]
    if place_on_system_nodes(deployment, groups) is None:
        budget = system_node_budget(deployment)
        routers = " and ".join(
            unit.where(f"{group.pods} routers of {unit.workloads.router.cpu} CPU / {unit.workloads.router.memory}")
            for unit, group in zip(units, groups, strict=True)
        )
        return [
            (
                f"workloads.router: {routers} (replicas plus the rollout's surge) and the controllers "
                f"({', '.join(sorted(system_controllers(deployment)))}) do not fit {count} "
                f"{instance_type} system nodes ({budget.cpu_m}m CPU / {budget.memory_mib}Mi each "
                f"after kube-reserved and the DaemonSets); lower workloads.router.cpu or raise {count_field} / "
                f"{field.rsplit('.', 1)[-1]}"
            )
        ]
    return []


@dataclass(frozen=True)
class RouterGroup:
    """One unit's router pods through a rollout: how many, and what each requests."""

    pods: int
    requests: Requests


def router_requests(router: RouterWorkload) -> Requests:
    return Requests(parse_cpu_m(router.cpu), parse_memory_mib(router.memory))


def router_max_surge(replicas: int) -> int:
    """One router is replaced at a time; a single router surges instead, so serving never stops."""
    return 1 if replicas == 1 else 0


def router_pods_during_rollout(replicas: int) -> int:
    return replicas + router_max_surge(replicas)


def place_on_system_nodes(deployment: Deployment, groups: list[RouterGroup]) -> list[Requests] | None:
    """The controllers first (they run before any router; largest first, each on the roomiest node), then each
    unit's routers under their own hostname spread (only the nodes holding the fewest of that unit's routers
    qualify; the roomiest takes the pod). The nodes' remaining room, or None when a pod finds no node."""
    budget = system_node_budget(deployment)
    free = [Requests(budget.cpu_m, budget.memory_mib) for _ in range(deployment.system_node_count)]

    def take(candidates: list[int], requests: Requests) -> int | None:
        fitting = [
            i for i in candidates if free[i].cpu_m >= requests.cpu_m and free[i].memory_mib >= requests.memory_mib
        ]
        if not fitting:
            return None
        best = max(fitting, key=lambda i: (free[i].cpu_m, free[i].memory_mib))
        free[best] = Requests(free[best].cpu_m - requests.cpu_m, free[best].memory_mib - requests.memory_mib)
        return best

    for requests in sorted(system_controllers(deployment).values(), key=lambda r: (-r.cpu_m, -r.memory_mib)):
        if take(list(range(len(free))), requests) is None:
            return None
    for group in groups:
        counts = [0] * len(free)
        for _ in range(group.pods):
            fewest = min(counts)
            node = take([i for i in range(len(free)) if counts[i] == fewest], group.requests)
            if node is None:
                return None
            counts[node] += 1
    return free
