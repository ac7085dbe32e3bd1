"""Can every pod pdstack runs be placed on the nodes pdstack creates, and does it get the devices it asks for?

The nodes are read from the synthesized templates (managed node groups with their launch templates, HyperPod
instance groups) plus the labels the platform adds; the pods are the workloads pdstack renders, the health agent it
renders for HyperPod, and the pods of the charts it installs, rendered from the values in the template merged over
the charts' pinned defaults (tests/infra/chart_facts.py). The matching is the scheduler's (tests/infra/scheduling.py).
An extended resource counts on a node only when the plugin that offers it can itself run there; hugepages only
when the node's boot configuration reserves them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Iterator

import pytest

from infra.hyperpod import LIFECYCLE_DIR
from infra.operations.serving_endpoints import ServingEndpoints
from infra.operations.smoke import SMOKE_IMAGE, job_manifest
from infra.workload_names import HYPERPOD_HEALTH_LABEL, HYPERPOD_HEALTH_TAINT, INSTANCE_TYPE_LABEL
from runtime.catalog import INSTANCE_CATALOG, InstanceSpec
from tests.infra.chart_facts import CHART_COMPONENT_PODS, CHART_PODS, OFFERS
from tests.infra.conftest import Synthesized
from tests.infra.scheduling import (
    Node,
    can_place,
    extended_requests,
    placement_problems,
    tolerates,
)

HUGEPAGES = "hugepages-2Mi"
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
_BY_HYPERPOD_NAME = {spec.hyperpod_name: spec for spec in INSTANCE_CATALOG.values() if spec.hyperpod_name}


def _platform_labels(instance_type: str, name: str) -> dict[str, str]:
    """What the kubelet sets on every node (kubernetes.io/docs/reference/labels-annotations-taints)."""
    return {INSTANCE_TYPE_LABEL: instance_type, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "zone-a"}


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
    groups = [(t.to_json()["Resources"], k, g) for t in templates for k, g in t.find_resources("AWS::EKS::Nodegroup").items()]
    for resources, logical_id, group in groups:
        props = group["Properties"]
        template = None
        if "LaunchTemplate" in props:
            template = resources[props["LaunchTemplate"]["Id"]["Ref"]]["Properties"]["LaunchTemplateData"]
        instance_type = template["InstanceType"] if template else props["InstanceTypes"][0]
        labels = {**_platform_labels(instance_type, logical_id), **props.get("Labels", {}),
                  "eks.amazonaws.com/nodegroup": logical_id,
                  "eks.amazonaws.com/capacityType": props.get("CapacityType", "ON_DEMAND")}
        taints = [{"key": t["Key"], "value": t.get("Value", ""), "effect": _EFFECTS[t["Effect"]]}
                  for t in props.get("Taints", [])]
        spec = INSTANCE_CATALOG.get(instance_type)
        hardware: dict[str, int] = {}
        if spec is not None:
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
        labels = {**_platform_labels(group["InstanceType"], name), **config.get("Labels", {}),
                  HYPERPOD_HEALTH_LABEL: health, "sagemaker.amazonaws.com/compute-type": group["InstanceType"],
                  "sagemaker.amazonaws.com/cluster-name": cluster["Properties"]["ClusterName"]}
        taints = [{"key": t["Key"], "value": t.get("Value", ""), "effect": t["Effect"]} for t in config.get("Taints", [])]
        if in_health_checks:
            taints.append(dict(HYPERPOD_HEALTH_TAINT))
        spec = _BY_HYPERPOD_NAME[group["InstanceType"]]
        hardware = {"nvidia.com/gpu": spec.gpus, "vpc.amazonaws.com/efa": spec.efa_interfaces, HUGEPAGES: hugepages}
        nodes[name] = (Node(name, labels, taints, hardware), spec)
    return nodes


def chart_pods(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Each chart's pod placement (a chart with several pods: ``chart/deployment``), rendered from the values in
    every stack's templates over the chart's pinned defaults. A chart without facts fails here."""
    pods = {}
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


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
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
    ((_, spec),) = [(n, s) for n, s in _pod_specs(objects) if n.startswith("DaemonSet/")]
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


FIXTURES = ["default", "capacity_block", "hyperpod", "all_types"]


@pytest.fixture(params=FIXTURES)
def synth(request: pytest.FixtureRequest) -> Synthesized:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("chart", sorted(OFFERS))
def test_device_plugins_run_on_every_gpu_node(synth: Synthesized, chart: str) -> None:
    plugin = chart_pods(synth)[chart]
    states = [False, True] if synth.hyperpod is not None else [False]
    for in_health_checks in states:
        for node, _ in gpu_nodes(synth, in_health_checks=in_health_checks).values():
            assert not placement_problems(plugin, node), (chart, in_health_checks, placement_problems(plugin, node))


def test_the_health_agent_runs_on_every_hyperpod_node(hyperpod: Synthesized) -> None:
    agent = health_agent_pod(hyperpod)
    for in_health_checks in (False, True):
        for node, _ in hyperpod_nodes(hyperpod, in_health_checks=in_health_checks).values():
            assert not placement_problems(agent, node), placement_problems(agent, node)


def test_every_worker_fits_a_gpu_node_with_its_devices(synth: Synthesized) -> None:
    plugins = chart_pods(synth)
    nodes = nodes_with_plugins(gpu_nodes(synth), plugins)
    workers = [(n, s) for n, s in _pod_specs(synth.stacks.workloads.objects) if "nvidia.com/gpu" in extended_requests(s)]
    assert workers
    for name, spec in workers:
        problems = {node.name: fits(spec, node) for node in nodes}
        assert any(not p for p in problems.values()), (name, problems)


def test_a_node_full_of_workers_has_the_devices_for_all_of_them(synth: Synthesized) -> None:
    """As many pods of a role as a node has GPUs for must also find EFA interfaces and hugepages for each."""
    nodes = nodes_with_plugins(gpu_nodes(synth), chart_pods(synth))
    for name, spec in _pod_specs(synth.stacks.workloads.objects):
        wanted = extended_requests(spec)
        if "nvidia.com/gpu" not in wanted:
            continue
        for node in (n for n in nodes if can_place(spec, n)):
            pods = node.capacity.get("nvidia.com/gpu", 0) // wanted["nvidia.com/gpu"]
            for resource, quantity in wanted.items():
                assert node.capacity.get(resource, 0) >= pods * quantity, (name, node.name, resource, pods)


def test_no_worker_lands_on_a_node_in_deep_health_checks(hyperpod: Synthesized) -> None:
    checking = [node for node, _ in hyperpod_nodes(hyperpod, in_health_checks=True).values()]
    for name, spec in _pod_specs(hyperpod.stacks.workloads.objects):
        assert not any(can_place(spec, node) for node in checking), name


def test_workers_tolerate_exactly_the_taints_of_their_pools(synth: Synthesized) -> None:
    """Nothing broader than what is configured: a worker tolerating every taint would also land on nodes being
    drained, checked or reserved for someone else."""
    taints = {(t["key"], t["value"], t["effect"]) for node, _ in gpu_nodes(synth).values() for t in node.taints}
    for name, spec in _pod_specs(synth.stacks.workloads.objects):
        for toleration in spec.get("tolerations", []):
            assert toleration.get("key") and toleration.get("operator") == "Equal", (name, toleration)
            assert any(tolerates(toleration, {"key": k, "value": v, "effect": e}) for k, v, e in taints), name


def test_system_pods_run_on_the_system_nodes(synth: Synthesized) -> None:
    system = [node for node, spec in eks_nodes(synth).values() if spec is None]
    assert system
    pods = [(n, s) for n, s in _pod_specs(synth.stacks.workloads.objects) if not extended_requests(s)]
    controllers = {name: spec for name, spec in chart_pods(synth).items() if name not in OFFERS}
    assert "lws" in controllers
    if synth.stacks.workloads.autoscaling is not None:
        assert {"keda/keda-operator", "keda/keda-operator-metrics-apiserver", "keda/keda-admission-webhooks"} <= set(
            controllers)
    if synth.stacks.gpu_nodes is not None and synth.stacks.gpu_nodes.node_autoscaler is not None:
        assert "cluster-autoscaler" in controllers
    pods += list(controllers.items())
    smoke = job_manifest("pdstack-smoke-x", ServingEndpoints(), "model", SMOKE_IMAGE, 60)
    pods.append(("smoke Job", smoke["spec"]["template"]["spec"]))
    for name, spec in pods:
        assert any(can_place(spec, node) for node in system), (name, [placement_problems(spec, n) for n in system])


# --- the matcher itself, on the cases the Kubernetes documentation spells out ----------------------------------------

NODE = Node("n1", {"zone": "a", "gpu": "true", "cores": "96"}, [{"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                                                              {"key": "soft", "value": "", "effect": "PreferNoSchedule"}])
TOLERATE = [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]


def _affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]}}}


@pytest.mark.parametrize(("spec", "placed"), [
    ({"tolerations": TOLERATE}, True),
    ({}, False),  # NoSchedule not tolerated; PreferNoSchedule never blocks
    ({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}, True),  # any value, any effect
    ({"tolerations": [{"operator": "Exists"}]}, True),  # empty key with Exists tolerates everything
    ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "y", "effect": "NoSchedule"}]}, False),
    ({"tolerations": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}, False),  # effect differs
    ({"tolerations": [{"key": "dedicated", "value": "x"}]}, True),  # Equal by default, any effect
    ({"tolerations": TOLERATE, "nodeSelector": {"zone": "a"}}, True),
    ({"tolerations": TOLERATE, "nodeSelector": {"zone": "a", "gpu": "false"}}, False),
    # nodeSelector AND affinity
    ({"tolerations": TOLERATE, "nodeSelector": {"zone": "b"},
      "affinity": _affinity([{"key": "gpu", "operator": "Exists"}])}, False),
    # terms ORed, expressions ANDed
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "In", "values": ["b"]}],
                                                     [{"key": "gpu", "operator": "In", "values": ["true"]}])}, True),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "In", "values": ["a"]},
                                                      {"key": "gpu", "operator": "In", "values": ["no"]}])}, False),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "absent", "operator": "NotIn", "values": ["x"]}])}, True),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "absent", "operator": "DoesNotExist"}])}, True),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "DoesNotExist"}])}, False),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "cores", "operator": "Gt", "values": ["64"]}])}, True),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "cores", "operator": "Lt", "values": ["64"]}])}, False),
    ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "Gt", "values": ["1"]}])}, False),
    ({"tolerations": TOLERATE, "affinity": _affinity()}, False),  # no terms: no node
    ({"tolerations": TOLERATE, "affinity": _affinity([])}, False),  # an empty term: no node
])
def test_matcher_follows_the_scheduler(spec: dict[str, Any], placed: bool) -> None:
    assert can_place(spec, NODE) is placed

