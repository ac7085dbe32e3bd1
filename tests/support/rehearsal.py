"""The nodes a synthesized deployment brings up, read from its templates (managed node groups with their launch
templates, HyperPod instance groups) plus the labels the platform adds, the pods of the charts it installs, and the
cluster after deploy with the DaemonSets and system controllers placed: the scheduling rehearsal's inputs
(tests/infra/test_schedulability.py, and the checks that reuse its nodes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from infra.gpu_capacity import node_capacity
from infra.hyperpod.stack import LIFECYCLE_DIR
from infra.workload_names import GPU_LABEL, HYPERPOD_HEALTH_LABEL, HYPERPOD_HEALTH_TAINT, INSTANCE_TYPE_LABEL
from runtime.catalog import INSTANCE_CATALOG, InstanceSpec
from tests.infra.chart_facts import CHART_COMPONENT_PODS, CHART_PODS, DAEMONSET_CHARTS, OFFERS
from tests.infra.scheduling import (
    Cluster,
    Node,
    can_place,
    extended_requests,
    placement_problems,
    pod_requests,
)
from tests.support.synthesis import Synthesized

HUGEPAGES = "hugepages-2Mi"
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
_BY_HYPERPOD_NAME = {spec.hyperpod_name: spec for spec in INSTANCE_CATALOG.values() if spec.hyperpod_name}


def _platform_labels(instance_type: str, name: str) -> dict[str, str]:
    """What the kubelet sets on every node (kubernetes.io/docs/reference/labels-annotations-taints)."""
    return {
        INSTANCE_TYPE_LABEL: instance_type,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/zone": "zone-a",
    }


def _hugepages(text: str) -> int:
    found = re.findall(r"vm\.nr_hugepages\s*=\s*\"?(\d+)", text)
    return int(found[-1]) * 2 * 2**20 if found else 0


def _resolve(value: Any) -> str:
    """A template string value, with intrinsic functions (Fn::Join, Fn::Base64) folded into text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(p) for p in parts)
    if isinstance(value, dict) and "Fn::Base64" in value:
        return _resolve(value["Fn::Base64"])
    return "TOKEN"


def eks_nodes(synth: Synthesized) -> dict[str, tuple[Node, InstanceSpec | None]]:
    """One node per managed node group, as EKS labels and taints it (EKS user guide, managed node groups:
    eks.amazonaws.com/nodegroup and eks.amazonaws.com/capacityType on every node), with its GPU/EFA hardware."""
    nodes = {}
    templates = [t for t in (synth.cluster, synth.gpu_nodes) if t is not None]
    groups = [
        (t.to_json()["Resources"], k, g) for t in templates for k, g in t.find_resources("AWS::EKS::Nodegroup").items()
    ]
    for resources, logical_id, group in groups:
        props = group["Properties"]
        template = None
        if "LaunchTemplate" in props:
            template = resources[props["LaunchTemplate"]["Id"]["Ref"]]["Properties"]["LaunchTemplateData"]
        instance_type = template["InstanceType"] if template else props["InstanceTypes"][0]
        labels = {
            **_platform_labels(instance_type, logical_id),
            **props.get("Labels", {}),
            "eks.amazonaws.com/nodegroup": logical_id,
            "eks.amazonaws.com/capacityType": props.get("CapacityType", "ON_DEMAND"),
        }
        taints = [
            {"key": t["Key"], "value": t.get("Value", ""), "effect": _EFFECTS[t["Effect"]]}
            for t in props.get("Taints", [])
        ]
        spec = INSTANCE_CATALOG.get(instance_type)
        hardware: dict[str, int] = {}
        if spec is not None:
            assert template is not None, f"{logical_id}: a catalog instance type is launched from its EFA template"
            efa = sum(1 for i in template["NetworkInterfaces"] if i.get("InterfaceType") in ("efa", "efa-only"))
            user_data = _resolve(template.get("UserData", ""))
            hardware = {"nvidia.com/gpu": spec.gpus, "vpc.amazonaws.com/efa": efa, HUGEPAGES: _hugepages(user_data)}
        nodes[logical_id] = (Node(logical_id, labels, taints, hardware), spec)
    return nodes


def hyperpod_nodes(synth: Synthesized, *, in_health_checks: bool = False) -> dict[str, tuple[Node, InstanceSpec]]:
    """One node per HyperPod instance group: its KubernetesConfig, the ml.* instance type, HyperPod's labels
    (sagemaker.amazonaws.com/node-health-status Schedulable, or Unschedulable plus the same-key taint while deep
    health checks run), and the hugepages on_create.sh reserves from the settings file deployed beside it."""
    assert synth.hyperpod is not None
    settings = [p.read_text() for p in synth.outdir.glob("asset.*/pdstack-node.env")]
    hugepages = _hugepages("\n".join(settings).replace("HUGEPAGES_2MI_PAGES=", "vm.nr_hugepages = "))
    if "HUGEPAGES_2MI_PAGES" not in (LIFECYCLE_DIR / "on_create.sh").read_text():
        hugepages = 0  # a settings file nobody reads reserves nothing
    ((_, cluster),) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").items()
    nodes = {}
    for group in cluster["Properties"]["InstanceGroups"]:
        name = group["InstanceGroupName"]
        config = group.get("KubernetesConfig", {})
        health = "Unschedulable" if in_health_checks else "Schedulable"
        labels = {
            **_platform_labels(group["InstanceType"], name),
            **config.get("Labels", {}),
            HYPERPOD_HEALTH_LABEL: health,
            "sagemaker.amazonaws.com/compute-type": group["InstanceType"],
            "sagemaker.amazonaws.com/cluster-name": cluster["Properties"]["ClusterName"],
        }
        taints = [
            {"key": t["Key"], "value": t.get("Value", ""), "effect": t["Effect"]} for t in config.get("Taints", [])
        ]
        if in_health_checks:
            taints.append(dict(HYPERPOD_HEALTH_TAINT))
        spec = _BY_HYPERPOD_NAME[group["InstanceType"]]
        hardware = {"nvidia.com/gpu": spec.gpus, "vpc.amazonaws.com/efa": spec.efa_interfaces, HUGEPAGES: hugepages}
        nodes[name] = (Node(name, labels, taints, hardware), spec)
    return nodes


# A device plugin the platform runs (cluster.addons: 'platform'): the file declares that it advertises its devices on
# pdstack's GPU nodes, whatever their taints; the rehearsal takes the declaration at its word.
PLATFORM_DEVICE_PLUGIN: dict[str, Any] = {"nodeSelector": {GPU_LABEL: "true"}, "tolerations": [{"operator": "Exists"}]}
_PLUGIN_SOURCES = {"nvidia-device-plugin": "nvidia_device_plugin", "aws-efa-k8s-device-plugin": "efa_device_plugin"}


def system_nodes(synth: Synthesized) -> list[Node]:
    """The nodes pdstack's routers and controllers run on: its system node group, or the existing cluster's nodes the
    file names (cluster.existing.system_nodes: its selector as their labels, its taints), one template each."""
    existing = synth.deployment.cluster.existing
    if existing is None:
        return [node for node, spec in eks_nodes(synth).values() if spec is None]
    platform = existing.system_nodes
    name = "platform-nodes"
    labels = {**_platform_labels(platform.instance_type, name), **platform.node_selector}
    taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in platform.taints]
    return [Node(name, labels, taints)]


def chart_pods(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Each chart's pod placement (a chart with several pods: ``chart/deployment``), rendered from the values in
    every stack's templates over the chart's pinned defaults, and the device plugins the platform runs as declared.
    A chart without facts fails here."""
    addons = synth.deployment.cluster.addons
    pods = {
        chart: dict(PLATFORM_DEVICE_PLUGIN)
        for chart, field in _PLUGIN_SOURCES.items()
        if getattr(addons, field) == "platform"
    }
    templates = [t for t in (synth.cluster, synth.gpu_nodes, synth.workloads) if t is not None]
    for chart in (c for t in templates for c in t.find_resources("Custom::AWSCDK-EKS-HelmChart").values()):
        props = chart["Properties"]
        name = props["Chart"]
        version, render = CHART_PODS.get(name) or CHART_COMPONENT_PODS[name]
        assert props["Version"] == version, f"{name} moved to {props['Version']}: re-read its chart facts"
        values = json.loads(_resolve(props.get("Values", "{}")))
        if name in CHART_PODS:
            pods[name] = render(values)
        else:
            pods.update({f"{name}/{pod}": spec for pod, spec in render(values).items()})
    return pods


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "DaemonSet"):
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "LeaderWorkerSet":
            template = obj["spec"]["leaderWorkerTemplate"]
            yield f"{name}/leader", template["leaderTemplate"]["spec"]
            yield f"{name}/worker", template["workerTemplate"]["spec"]


def health_agent_pod(synth: Synthesized) -> dict[str, Any]:
    ((_, manifest),) = synth.hyperpod.find_resources("Custom::AWSCDK-EKS-KubernetesResource").items()
    objects = json.loads(_resolve(manifest["Properties"]["Manifest"]))
    ((_, spec),) = [(n, s) for n, s in pod_specs(objects) if n.startswith("DaemonSet/")]
    return spec


def nodes_with_plugins(nodes: dict[str, tuple[Node, Any]], plugins: dict[str, dict[str, Any]]) -> list[Node]:
    """The nodes with only the extended resources whose device plugin lands there (hugepages need no plugin)."""
    offered = []
    for node, _ in nodes.values():
        capacity = {HUGEPAGES: node.capacity.get(HUGEPAGES, 0)}
        for chart, resource in OFFERS.items():
            if chart in plugins and can_place(plugins[chart], node) and resource in node.capacity:
                capacity[resource] = node.capacity[resource]
        offered.append(replace(node, capacity=capacity))
    return offered


def fits(spec: dict[str, Any], node: Node) -> list[str]:
    problems = placement_problems(spec, node)
    for resource, wanted in extended_requests(spec).items():
        if node.capacity.get(resource, 0) < wanted:
            problems.append(f"{resource}: wants {wanted}, {node.name} offers {node.capacity.get(resource, 0)}")
    return problems


def gpu_nodes(synth: Synthesized, *, in_health_checks: bool = False) -> dict[str, tuple[Node, Any]]:
    if synth.hyperpod is not None:
        return hyperpod_nodes(synth, in_health_checks=in_health_checks)
    return {k: v for k, v in eks_nodes(synth).items() if v[1] is not None}


def _threads_per_core(synth: Synthesized, node: Node) -> int:
    """EKS node groups: the launch template's CpuOptions (none: the instance default, 2); HyperPod: the group's."""
    if synth.hyperpod is not None:
        ((_, cluster),) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").items()
        (group,) = [g for g in cluster["Properties"]["InstanceGroups"] if g["InstanceGroupName"] == node.name]
        return int(group.get("ThreadsPerCore", 2))
    resources = {
        k: v for t in (synth.cluster, synth.gpu_nodes) if t is not None for k, v in t.to_json()["Resources"].items()
    }
    props = resources[node.name]["Properties"]
    template = resources[props["LaunchTemplate"]["Id"]["Ref"]]["Properties"]["LaunchTemplateData"]
    return int(template.get("CpuOptions", {}).get("ThreadsPerCore", 2))


def group_sizes(synth: Synthesized) -> dict[str, tuple[int, int]]:
    """(nodes when serving, most nodes) per node group or HyperPod instance group. A Capacity Block group is
    created empty and scaled to its size when the block starts (README, "Deploying"): it serves at its maximum."""
    sizes = {}
    if synth.hyperpod is not None:
        ((_, cluster),) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").items()
        autoscaled = "AutoScaling" in cluster["Properties"]
        sizes = {
            g["InstanceGroupName"]: (0 if autoscaled else g["InstanceCount"], g["InstanceCount"])
            for g in cluster["Properties"]["InstanceGroups"]
        }
    for template in (t for t in (synth.cluster, synth.gpu_nodes) if t is not None):
        for logical_id, group in template.find_resources("AWS::EKS::Nodegroup").items():
            scaling = group["Properties"]["ScalingConfig"]
            block = group["Properties"].get("CapacityType") == "CAPACITY_BLOCK"
            sizes[logical_id] = (scaling["MaxSize"] if block else scaling["DesiredSize"], scaling["MaxSize"])
    return sizes


def _daemonset_pods(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    """Every DaemonSet pod with its requests: the EKS add-ons' (pinned in infra/gpu_capacity/node_capacity.py), the
    device plugins (chart facts) with the EFA plugin's allowance, and the health agent as the HyperPod stack renders
    it."""
    pods = [
        (name, {"containers": [{"resources": {"requests": {"cpu": f"{r.cpu_m}m", "memory": f"{r.memory_mib}Mi"}}}]})
        for name, r in node_capacity.EVERY_NODE_DAEMONSETS.items()
    ]
    plugins = chart_pods(synth)
    for chart in OFFERS:
        r = node_capacity.GPU_NODE_DAEMONSETS[chart]
        pods.append(
            (
                chart,
                {
                    **plugins[chart],
                    "containers": [{"resources": {"requests": {"cpu": f"{r.cpu_m}m", "memory": f"{r.memory_mib}Mi"}}}],
                },
            )
        )
    pods += [(chart, plugins[chart]) for chart in DAEMONSET_CHARTS if chart in plugins]
    if synth.hyperpod is not None:
        pods.append(("health-monitoring-agent", health_agent_pod(synth)))
    return pods


def rehearsal_cluster(synth: Synthesized, *, most: bool = False) -> Cluster:
    """The nodes after deploy (``most``: every group at its maximum), each with its allocatable less the DaemonSets
    that land on it, and the system controllers bound."""
    sizes = group_sizes(synth)
    plugins = chart_pods(synth)
    daemonsets = _daemonset_pods(synth)
    nodes = []
    templates = list(gpu_nodes(synth).values())
    system = system_nodes(synth)
    templates += [(node, None) for node in system]
    existing = synth.deployment.cluster.existing
    for node, spec in templates:
        instance_type = node.labels[INSTANCE_TYPE_LABEL]
        if spec is not None:  # a GPU node
            offered = nodes_with_plugins({node.name: (node, spec)}, plugins)[0].capacity
            cpus = node_capacity.logical_cpus(spec, _threads_per_core(synth, node))
            memory_gib, ec2_type = spec.memory_gib, spec.name
        else:
            offered = {}
            cpus, memory_gib = node_capacity.SYSTEM_INSTANCE_TYPES[instance_type]
            ec2_type = instance_type
        memory_mib = (
            int(memory_gib * 1024 * (1 - node_capacity.UNREPORTED_MEMORY_FRACTION))
            - node_capacity.kube_reserved_memory_mib(ec2_type)
            - node_capacity.EVICTION_HARD_MEMORY_MIB
        )
        allocatable = {
            **offered,
            "cpu": cpus * 1000 - node_capacity.kube_reserved_cpu_m(cpus),
            "memory": memory_mib * 2**20 - offered.get(HUGEPAGES, 0),
            "pods": node_capacity.ENI_MAX_PODS[ec2_type],
        }
        for _name, pod in daemonsets:  # a DaemonSet pod lands wherever its placement allows
            if can_place(pod, node):
                for resource, amount in {**pod_requests(pod), "pods": 1}.items():
                    allocatable[resource] -= amount
        count = existing.system_nodes.count if existing and spec is None else sizes[node.name][1 if most else 0]
        nodes += [
            replace(
                node,
                name=f"{node.name}-{i}",
                capacity=allocatable,
                labels={**node.labels, "kubernetes.io/hostname": f"{node.name}-{i}"},
            )
            for i in range(count)
        ]
    cluster = Cluster(nodes)
    controllers = [
        (name, spec) for name, spec in plugins.items() if name not in OFFERS and name not in DAEMONSET_CHARTS
    ]
    controllers += [
        (
            name,
            {
                "nodeSelector": {},
                # the EKS add-ons' own controllers; on an existing cluster counted on the platform nodes as the
                # config check counts them
                "tolerations": synth.deployment.system_tolerations,
                "containers": [{"resources": {"requests": {"cpu": f"{r.cpu_m}m", "memory": f"{r.memory_mib}Mi"}}}],
            },
        )
        for name, r in node_capacity.SYSTEM_CONTROLLERS.items()
        if name != "lws-controller-manager"
    ]
    system_templates = {n.name for n in system}
    on_system = [n for n in nodes if n.name.rsplit("-", 1)[0] in system_templates]
    for name, spec in sorted(controllers, key=lambda c: -pod_requests(c[1]).get("cpu", 0)):
        assert Cluster(on_system, cluster.pods, cluster.used).place(name, spec, {}) is not None, (
            name,
            [cluster.fits(spec, n) for n in on_system],
        )
    return cluster
