"""Can every pod pdstack runs be placed on the nodes pdstack creates, and does it get the devices it asks for?

The nodes are read from the synthesized templates (managed node groups with their launch templates, HyperPod
instance groups) plus the labels the platform adds; the pods are the workloads pdstack renders, the health agent it
renders for HyperPod, and the pods of the charts it installs, rendered from the values in the template merged over
the charts' pinned defaults (tests/infra/chart_facts.py). The matching is the scheduler's (tests/infra/scheduling.py).
An extended resource counts on a node only when the plugin that offers it can itself run there; hugepages only
when the node's boot configuration reserves them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.config import Deployment, DeploymentError, parse_deployment
from infra.gpu_capacity import node_capacity
from infra.operations.serving_endpoints import ServingEndpoints
from infra.operations.smoke import SMOKE_IMAGE, job_manifest
from infra.workloads.stack import serving_objects
from runtime.roles import Role
from tests.infra.chart_facts import OFFERS
from tests.infra.scheduling import (
    Node,
    can_place,
    extended_requests,
    placement_problems,
    pod_requests,
    roll,
    tolerates,
)
from tests.support.rehearsal import (
    chart_pods,
    fits,
    gpu_nodes,
    group_sizes,
    health_agent_pod,
    hyperpod_nodes,
    nodes_with_plugins,
    pod_specs,
    rehearsal_cluster,
    system_nodes,
)
from tests.support.synthesis import EXAMPLES, INFRA_FIXTURES, SynthesisCache, Synthesized, load_yaml

# The shipped deployments, and the example user apps' settings (issue 25: the rehearsal runs over the examples).
FIXTURES = [*INFRA_FIXTURES, *EXAMPLES]

ENGINE_ROLES: dict[str, Role] = {"pdstack-prefill": "prefill", "pdstack-decode": "decode"}


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
    workers = [(n, s) for n, s in pod_specs(synth.stacks.workloads.objects) if "nvidia.com/gpu" in extended_requests(s)]
    assert workers
    for name, spec in workers:
        problems = {node.name: fits(spec, node) for node in nodes}
        assert any(not p for p in problems.values()), (name, problems)


def test_a_node_full_of_workers_has_the_devices_for_all_of_them(synth: Synthesized) -> None:
    """As many pods of a role as a node has GPUs for must also find EFA interfaces and hugepages for each."""
    nodes = nodes_with_plugins(gpu_nodes(synth), chart_pods(synth))
    for name, spec in pod_specs(synth.stacks.workloads.objects):
        wanted = extended_requests(spec)
        if "nvidia.com/gpu" not in wanted:
            continue
        for node in (n for n in nodes if can_place(spec, n)):
            pods = node.capacity.get("nvidia.com/gpu", 0) // wanted["nvidia.com/gpu"]
            for resource, quantity in wanted.items():
                assert node.capacity.get(resource, 0) >= pods * quantity, (name, node.name, resource, pods)


def test_no_worker_lands_on_a_node_in_deep_health_checks(hyperpod: Synthesized) -> None:
    checking = [node for node, _ in hyperpod_nodes(hyperpod, in_health_checks=True).values()]
    for name, spec in pod_specs(hyperpod.stacks.workloads.objects):
        assert not any(can_place(spec, node) for node in checking), name


def test_workers_tolerate_exactly_the_taints_of_their_pools(synth: Synthesized) -> None:
    """Nothing broader than what is configured: a worker tolerating every taint would also land on nodes being
    drained, checked or reserved for someone else. The same for the routers and the platform nodes' taints."""
    taints = {(t["key"], t["value"], t["effect"]) for node, _ in gpu_nodes(synth).values() for t in node.taints}
    platform = {(t["key"], t["value"], t["effect"]) for node in system_nodes(synth) for t in node.taints}
    for name, spec in pod_specs(synth.stacks.workloads.objects):
        allowed = taints if "nvidia.com/gpu" in extended_requests(spec) else platform
        for toleration in spec.get("tolerations", []):
            assert toleration.get("key") and toleration.get("operator") == "Equal", (name, toleration)
            assert any(tolerates(toleration, {"key": k, "value": v, "effect": e}) for k, v, e in allowed), name


def test_system_pods_run_on_the_system_nodes(synth: Synthesized) -> None:
    system = system_nodes(synth)
    assert system
    pods = [(n, s) for n, s in pod_specs(synth.stacks.workloads.objects) if not extended_requests(s)]
    controllers = {name: spec for name, spec in chart_pods(synth).items() if name not in OFFERS}
    addons = synth.deployment.cluster.addons
    assert ("lws" in controllers) is (addons.leader_worker_set == "pdstack")
    if synth.stacks.workloads.autoscaling is not None and addons.keda == "pdstack":
        assert {"keda/keda-operator", "keda/keda-operator-metrics-apiserver", "keda/keda-admission-webhooks"} <= set(
            controllers
        )
    if synth.stacks.gpu_nodes is not None and synth.stacks.gpu_nodes.node_autoscaler is not None:
        assert "cluster-autoscaler" in controllers
    pods += list(controllers.items())
    smoke = job_manifest(
        "pdstack-smoke-x", ServingEndpoints(), "model", SMOKE_IMAGE, 60, synth.deployment.system_placement
    )
    pods.append(("smoke Job", smoke["spec"]["template"]["spec"]))
    for name, spec in pods:
        assert any(can_place(spec, node) for node in system), (name, [placement_problems(spec, n) for n in system])


# --- the matcher itself, on the cases the Kubernetes documentation spells out ----------------------------------------

NODE = Node(
    "n1",
    {"zone": "a", "gpu": "true", "cores": "96"},
    [
        {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
        {"key": "soft", "value": "", "effect": "PreferNoSchedule"},
    ],
)
TOLERATE = [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]


def _affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
            }
        }
    }


@pytest.mark.parametrize(
    ("spec", "placed"),
    [
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
        (
            {
                "tolerations": TOLERATE,
                "nodeSelector": {"zone": "b"},
                "affinity": _affinity([{"key": "gpu", "operator": "Exists"}]),
            },
            False,
        ),
        # terms ORed, expressions ANDed
        (
            {
                "tolerations": TOLERATE,
                "affinity": _affinity(
                    [{"key": "zone", "operator": "In", "values": ["b"]}],
                    [{"key": "gpu", "operator": "In", "values": ["true"]}],
                ),
            },
            True,
        ),
        (
            {
                "tolerations": TOLERATE,
                "affinity": _affinity(
                    [
                        {"key": "zone", "operator": "In", "values": ["a"]},
                        {"key": "gpu", "operator": "In", "values": ["no"]},
                    ]
                ),
            },
            False,
        ),
        (
            {"tolerations": TOLERATE, "affinity": _affinity([{"key": "absent", "operator": "NotIn", "values": ["x"]}])},
            True,
        ),
        ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "absent", "operator": "DoesNotExist"}])}, True),
        ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "DoesNotExist"}])}, False),
        (
            {"tolerations": TOLERATE, "affinity": _affinity([{"key": "cores", "operator": "Gt", "values": ["64"]}])},
            True,
        ),
        (
            {"tolerations": TOLERATE, "affinity": _affinity([{"key": "cores", "operator": "Lt", "values": ["64"]}])},
            False,
        ),
        ({"tolerations": TOLERATE, "affinity": _affinity([{"key": "zone", "operator": "Gt", "values": ["1"]}])}, False),
        ({"tolerations": TOLERATE, "affinity": _affinity()}, False),  # no terms: no node
        ({"tolerations": TOLERATE, "affinity": _affinity([])}, False),  # an empty term: no node
    ],
)
def test_matcher_follows_the_scheduler(spec: dict[str, Any], placed: bool) -> None:
    assert can_place(spec, NODE) is placed


# --- the rehearsal: what the cluster does with our objects over time ------------------------------------------------
# Nodes with what they really offer (logical CPUs by threads per core, memory less kube-reserved, eviction and the
# hugepages the boot configuration reserves, pods), less the requests of the DaemonSets that land on them; the
# controllers the charts and EKS add-ons run on the system nodes; then every replica, every rolling update and
# every scale-out to its maximum.


def _key(obj: dict[str, Any]) -> str:
    """A namespaced object's namespace/name: every serving unit has its pdstack-prefill, in its own namespace."""
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _workloads(
    synth: Synthesized,
) -> list[tuple[str, dict[str, Any], dict[str, str], int, int, int, int, Deployment]]:
    """(namespace/name, pod spec, pod labels, replicas at deploy, group size, maxSurge, maxUnavailable, the serving
    unit's view of the deployment) of every controller of every serving unit."""
    found = []
    for unit in synth.stacks.workloads.units:
        deployment = unit.deployment
        found += [(*w, deployment) for w in _unit_workloads(deployment, unit.objects)]
    return found


def _unit_workloads(
    deployment: Deployment, objects: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any], dict[str, str], int, int, int, int]]:
    found = []
    for obj in (o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet")):
        spec = obj["spec"]
        name = _key(obj)
        role = obj["metadata"]["name"].removeprefix("pdstack-")
        # a ScaledObject owns an autoscaled worker's count; it starts from serving.<role>.replicas
        replicas = spec.get("replicas", deployment.serving.role(role).replicas if role in ("prefill", "decode") else 1)
        if obj["kind"] == "Deployment":
            update = spec["strategy"]["rollingUpdate"]
            found.append(
                (
                    name,
                    spec["template"]["spec"],
                    spec["template"]["metadata"]["labels"],
                    replicas,
                    1,
                    update["maxSurge"],
                    update["maxUnavailable"],
                )
            )
        elif obj["kind"] == "LeaderWorkerSet":
            update = spec["rolloutStrategy"]["rollingUpdateConfiguration"]
            template = spec["leaderWorkerTemplate"]
            assert template["leaderTemplate"] == template["workerTemplate"]  # one spec places both
            found.append(
                (
                    name,
                    template["workerTemplate"]["spec"],
                    template["workerTemplate"]["metadata"]["labels"],
                    replicas,
                    template["size"],
                    update["maxSurge"],
                    update["maxUnavailable"],
                )
            )
    return found


def test_every_replica_of_every_workload_is_placed_on_the_nodes_after_deploy(synth: Synthesized) -> None:
    cluster = rehearsal_cluster(synth)
    for name, spec, labels, replicas, group, _, _, _ in _workloads(synth):
        for index in range(replicas * group):
            assert cluster.place(f"{name}-{index}", spec, labels) is not None, (
                name,
                index,
                {n.name: cluster.fits(spec, n) for n in cluster.nodes},
            )


@pytest.mark.parametrize("kind", ["Deployment", "LeaderWorkerSet"])
def test_every_rolling_update_finishes_next_to_everything_else(synth: Synthesized, kind: str) -> None:
    """Each controller rolled with its own strategy and spread while every other workload keeps its replicas."""
    workloads = _workloads(synth)
    rolled = [
        w for w in workloads if any(o["kind"] == kind and _key(o) == w[0] for o in synth.stacks.workloads.objects)
    ]
    if kind == "LeaderWorkerSet" and not rolled:
        pytest.skip("no multi-node role in this deployment")
    for target in rolled:
        cluster = rehearsal_cluster(synth)
        for name, spec, labels, replicas, group, _, _, _ in workloads:
            if name != target[0]:
                for index in range(replicas * group):
                    assert cluster.place(f"{name}-{index}", spec, labels) is not None, name
        name, spec, labels, replicas, group, surge, unavailable, _ = target
        assert not roll(cluster, name, spec, labels, replicas, surge, unavailable, group)


def test_a_rollout_never_takes_down_more_than_the_disruption_budget_allows(synth: Synthesized) -> None:
    budgets = {_key(o): o["spec"] for o in synth.stacks.workloads.objects if o["kind"] == "PodDisruptionBudget"}
    for name, _, _, replicas, _, _, unavailable, _ in _workloads(synth):
        budget = budgets[name]
        allowed = budget["maxUnavailable"] if "maxUnavailable" in budget else replicas - budget["minAvailable"]
        assert unavailable <= max(allowed, 0) or replicas == 1, (name, unavailable, budget)


def test_scale_out_to_every_maximum_fits_the_largest_node_groups(synth: Synthesized) -> None:
    """Every role at its most replicas (the autoscaler's max_replicas, or the fixed count) on every group at its
    maximum; beyond the nodes after deploy only when something adds nodes (Cluster Autoscaler or HyperPod's)."""
    deployment = synth.deployment
    cluster = rehearsal_cluster(synth, most=True)
    needed_more = False
    for name, spec, labels, replicas, group, _, _, unit in _workloads(synth):
        role = ENGINE_ROLES.get(name.rpartition("/")[2])
        most = unit.max_replicas(role) if role is not None else replicas
        needed_more |= most > replicas
        for index in range(most * group):
            assert cluster.place(f"{name}-{index}", spec, labels) is not None, (name, index)
    sizes = group_sizes(synth)
    if needed_more and any(after < most for after, most in sizes.values()):
        adds_nodes = (synth.stacks.gpu_nodes is not None and synth.stacks.gpu_nodes.node_autoscaler is not None) or (
            deployment.hyperpod is not None and deployment.hyperpod.node_autoscaling
        )
        assert adds_nodes, "replicas beyond the nodes after deploy, and nothing adds nodes"


def test_the_config_check_counts_the_controllers_the_charts_run(synth: Synthesized) -> None:
    """infra/gpu_capacity/node_capacity.py's controller requests (what the config check places) are the charts' own."""
    pods = chart_pods(synth)
    counted = {
        "lws": node_capacity.SYSTEM_CONTROLLERS["lws-controller-manager"],
        **{f"keda/{n}": r for n, r in node_capacity.KEDA_CONTROLLERS.items()},
        **{
            f"aws-load-balancer-controller/replica-{i}": node_capacity.LOAD_BALANCER_CONTROLLER_REQUESTS
            for i in range(node_capacity.LOAD_BALANCER_CONTROLLER_REPLICAS)
        },
    }
    for chart, requests in counted.items():
        if chart in pods:
            wanted = pod_requests(pods[chart])
            assert (wanted["cpu"], wanted["memory"] // 2**20) == (requests.cpu_m, requests.memory_mib), chart


@pytest.mark.parametrize(
    ("router", "refused"), [({}, False), ({"cpu": "3"}, True), ({"replicas": 3}, True), ({"replicas": 1}, False)]
)
def test_the_config_check_and_the_rehearsal_agree_on_the_routers(
    default: Synthesized, router: dict, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader refuses exactly the router layouts whose rollout the rehearsal cannot finish on the default
    system nodes."""
    import infra.config.deployment as config

    data = copy.deepcopy(load_yaml("default.yaml"))
    data["workloads"]["router"].update(router)
    try:
        parse_deployment(data)
        accepted = True
    except DeploymentError:
        accepted = False
    assert accepted is not refused
    monkeypatch.setattr(config, "capacity_problems", lambda deployment: [])
    deployment = parse_deployment(data)
    (obj,) = [
        o
        for o in serving_objects(deployment, "image")
        if o["metadata"]["name"] == "pdstack-router" and o["kind"] == "Deployment"
    ]
    cluster = rehearsal_cluster(default)
    update = obj["spec"]["strategy"]["rollingUpdate"]
    stalled = roll(
        cluster,
        "router",
        obj["spec"]["template"]["spec"],
        obj["spec"]["template"]["metadata"]["labels"],
        obj["spec"]["replicas"],
        update["maxSurge"],
        update["maxUnavailable"],
    )
    assert bool(stalled) is refused, stalled


def test_the_old_surging_router_rollout_stalls_in_the_rehearsal(default: Synthesized) -> None:
    """The method catches defect 4: the default routers with maxSurge 1 / maxUnavailable 0 never finish."""
    (obj,) = [
        o
        for o in default.stacks.workloads.objects
        if o["metadata"]["name"] == "pdstack-router" and o["kind"] == "Deployment"
    ]
    template = obj["spec"]["template"]
    assert roll(
        rehearsal_cluster(default),
        "router",
        template["spec"],
        template["metadata"]["labels"],
        obj["spec"]["replicas"],
        1,
        0,
    )


# --- changes at CloudFormation level ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_other_model(synthesized: SynthesisCache) -> Synthesized:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["serving"]["model"] = {"source": "s3://my-models/Qwen/Qwen3-8B", "served_name": "qwen3-8b"}
    return synthesized.get(parse_deployment(data))


def _resources(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        f"{stack.stack_name}/{k}": v
        for stack in synth.stacks.all
        for k, v in json.loads((synth.outdir / f"{stack.artifact_id}.template.json").read_text())
        .get("Resources", {})
        .items()
    }


def test_changing_the_model_replaces_no_cluster_node_group_or_repository(
    default: Synthesized, default_other_model: Synthesized
) -> None:
    """Only the serving manifest (the ConfigMap and the pod templates reading the model) and the model reader's
    bucket policy change; the cluster, the node groups, their launch templates and the image repository keep their
    logical ids and every property (so CloudFormation updates nothing there, let alone replaces it)."""
    before, after = _resources(default), _resources(default_other_model)
    kept = (
        "AWS::EKS::Cluster",
        "AWS::EKS::Nodegroup",
        "AWS::EC2::LaunchTemplate",
        "AWS::ECR::Repository",
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::PlacementGroup",
    )
    for logical_id, resource in before.items():
        if resource["Type"] in kept:
            assert logical_id in after and after[logical_id] == resource, logical_id
    assert set(before) == set(after)
    changed = {k.split("/", 1)[1] for k in before if before[k] != after[k]}
    # the manifest, the model reader's role and policy; and the metrics collector, whose relabelling names the
    # served model (infra/observability/targets.py), so the new name labels the series
    assert changed and all(k.startswith(("Serving", "ModelReader", "Collector")) for k in changed), changed


@pytest.mark.parametrize("routers", [1, 2, 3])
def test_every_disruption_budget_lets_a_node_drain_proceed(
    default: Synthesized, routers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node group update or a scale-in evicts pods through their PodDisruptionBudgets: with every replica ready, each
    budget must allow one eviction (a budget allowing none holds the drain until the update fails), and no more
    than the replicas less one where there are several (those keep serving)."""
    import infra.config.deployment as config

    monkeypatch.setattr(config, "capacity_problems", lambda deployment: [])  # three routers do not fit: not the point
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["workloads"]["router"]["replicas"] = routers
    deployment = parse_deployment(data)
    objects = serving_objects(deployment, "image")
    replicas = {
        o["metadata"]["name"]: o["spec"].get("replicas", 1)
        for o in objects
        if o["kind"] in ("Deployment", "LeaderWorkerSet")
    }
    for budget in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        name, spec = budget["metadata"]["name"], budget["spec"]
        total = replicas[name]
        allowed = spec["maxUnavailable"] if "maxUnavailable" in spec else total - spec["minAvailable"]
        assert allowed >= 1, (name, spec, total)
        assert total == 1 or allowed <= total - 1, (name, spec, total)
