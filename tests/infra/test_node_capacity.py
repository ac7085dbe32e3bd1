"""Worker and router sizing from what the nodes really offer (infra/gpu_capacity/node_capacity.py), the config check
that refuses layouts that do not fit, and the config hash that rolls exactly the pods reading a changed section."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity.node_capacity import (
    kube_reserved_cpu_m,
    kube_reserved_memory_mib,
    parse_cpu_m,
    parse_memory_mib,
    worker_resources,
)
from infra.workload_names import CONFIG_HASH_ANNOTATION
from infra.workloads.stack import serving_objects
from runtime.catalog import INSTANCE_CATALOG
from tests.support.synthesis import SHIPPED, load_yaml

IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving:0123456789abcdef0123"


@pytest.mark.parametrize(("cpus", "reserved"), [(1, 60), (2, 70), (4, 80), (16, 110), (96, 310), (192, 550)])
def test_kube_reserved_cpu_follows_the_eks_ami_bands(cpus: int, reserved: int) -> None:
    """6% of the first core, 1% of the second, 0.5% of the next two, 0.25% of the rest (nodeadm's
    getCPUMillicoresToReserve; 16 vCPUs reserve 60 + 10 + 10 + 30 = 110m)."""
    assert kube_reserved_cpu_m(cpus) == reserved


def test_kube_reserved_memory_is_11_mib_per_max_pod_plus_255() -> None:
    assert kube_reserved_memory_mib("m7i.xlarge") == 11 * 58 + 255
    assert kube_reserved_memory_mib("p5.48xlarge") == 11 * 100 + 255


def hyperpod_with(decode: dict[str, Any], threads_per_core: int = 1) -> dict[str, Any]:
    data = copy.deepcopy(load_yaml("hyperpod.yaml"))
    data["hyperpod"]["instance_groups"][0]["threads_per_core"] = threads_per_core
    data["serving"]["decode"] = {"instance_type": "p5.48xlarge", **decode}
    return data


def requests_of(data: dict[str, Any], kind: str, name: str) -> dict[str, str]:
    (obj,) = [
        o for o in serving_objects(parse_deployment(data), IMAGE) if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    return obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]


@pytest.mark.parametrize("threads_per_core", [1, 2])
def test_a_whole_node_hyperpod_worker_asks_for_no_more_cpu_than_the_node_has(threads_per_core: int) -> None:
    """ThreadsPerCore 1 (HyperPod's default) leaves 96 logical CPUs on ml.p5.48xlarge: a worker asking for 90% of
    the catalog's 192 vCPUs stays Pending forever."""
    cpus = INSTANCE_CATALOG["p5.48xlarge"].vcpus * threads_per_core // 2
    requests = requests_of(hyperpod_with({"tensor_parallel": 8}, threads_per_core), "Deployment", "pdstack-decode")
    assert cpus * 1000 - 2000 < parse_cpu_m(requests["cpu"]) <= cpus * 1000 - kube_reserved_cpu_m(cpus) - 500


def test_eight_one_gpu_workers_fit_a_hyperpod_node_side_by_side() -> None:
    deployment = parse_deployment(hyperpod_with({"tensor_parallel": 1}))
    worker = worker_resources(deployment, "decode")
    assert 8 * worker.cpu_m <= 96_000 - kube_reserved_cpu_m(96) - 500  # the health agent's 500m
    hugepages = 8 * parse_memory_mib(deployment.workloads.hugepages_2mi)
    assert 8 * worker.memory_mib + hugepages < 2048 * 1024 - kube_reserved_memory_mib("p5.48xlarge")


def test_a_shm_larger_than_the_workers_memory_is_refused() -> None:
    data = load_yaml("default.yaml")
    data["workloads"]["shm_gib"] = 300  # one-GPU workers: an eighth of a p5's memory each
    with pytest.raises(DeploymentError, match=r"workloads.shm_gib=300 does not fit .* serving.prefill worker"):
        parse_deployment(data)


def test_the_default_router_rollout_replaces_in_place_and_keeps_one_serving() -> None:
    """Two routers of 2 CPU on two m7i.xlarge (3.92 CPU allocatable, less aws-node, kube-proxy, the EBS node agent
    and the LWS controller's 1 CPU): a surge pod fits nowhere, so the rollout replaces one router at a time."""
    deployment = parse_deployment(load_yaml("default.yaml"))
    (router,) = [
        o
        for o in serving_objects(deployment, IMAGE)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdstack-router"
    ]
    assert router["spec"]["replicas"] == 2
    assert router["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_a_single_router_surges_so_serving_never_stops() -> None:
    data = load_yaml("default.yaml")
    data["workloads"]["router"]["replicas"] = 1
    (router,) = [
        o
        for o in serving_objects(parse_deployment(data), IMAGE)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdstack-router"
    ]
    assert router["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize(
    ("router", "fits"),
    [
        ({"cpu": "2"}, True),
        ({"cpu": "3"}, False),
        ({"replicas": 3, "cpu": "2"}, False),
        ({"replicas": 1, "cpu": "2"}, True),
        ({"memory": "15Gi"}, False),
    ],
)
def test_the_config_check_places_routers_and_controllers_on_the_system_nodes(router: dict, fits: bool) -> None:
    data = load_yaml("default.yaml")
    data["workloads"]["router"].update(router)
    if fits:
        parse_deployment(data)
    else:
        with pytest.raises(DeploymentError, match=r"workloads.router: .* do not fit 2 m7i.xlarge system nodes"):
            parse_deployment(data)


def test_an_unknown_system_instance_type_is_refused_with_the_known_ones() -> None:
    data = load_yaml("default.yaml")
    data["cluster"]["system_instance_type"] = "t3.nano"
    with pytest.raises(DeploymentError, match=r"system_instance_type='t3.nano': .* m7i.xlarge"):
        parse_deployment(data)


# --- a changed section rolls exactly the pods that read it ------------------------------------------------------------


def template_hashes(data: dict[str, Any]) -> dict[str, str]:
    hashes = {}
    for obj in serving_objects(parse_deployment(data), IMAGE):
        if obj["kind"] == "Deployment":
            hashes[obj["metadata"]["name"]] = obj["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        elif obj["kind"] == "LeaderWorkerSet":
            for part in ("leader", "worker"):
                template = obj["spec"]["leaderWorkerTemplate"][f"{part}Template"]
                hashes[f"{obj['metadata']['name']}/{part}"] = template["metadata"]["annotations"][
                    CONFIG_HASH_ANNOTATION
                ]
    return hashes


ROUTER, PREFILL, DECODE = {"pdstack-router"}, {"pdstack-prefill"}, {"pdstack-decode"}
CHANGES = [
    # (what the user changes, the pod templates that must roll)
    ("model", lambda s: s["model"].update(source="s3://my-models/other"), ROUTER | PREFILL | DECODE),
    ("served name", lambda s: s["model"].update(served_name="other"), ROUTER | PREFILL | DECODE),
    ("prefill layout", lambda s: s["prefill"].update(gpu_memory_utilization=0.8), PREFILL),
    ("decode layout", lambda s: s["decode"].update(gpu_memory_utilization=0.8), DECODE),
    ("decode port", lambda s: s["decode"].update(ports={"http": 8100}), ROUTER | DECODE),
    ("router", lambda s: s.update(router={"pd_threshold_tokens": 1000}), ROUTER),
    ("kv transfer", lambda s: s.update(kv_transfer={"backend": "UCX"}), PREFILL | DECODE),
    ("kv events", lambda s: s.update(kv_events={"enabled": False}), ROUTER | PREFILL | DECODE),
    ("decode replicas", lambda s: s["decode"].update(replicas=2), set()),
]


@pytest.mark.parametrize(("change", "edit", "rolled"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_config_change_rolls_exactly_the_pods_that_read_it(change: str, edit: Any, rolled: set[str]) -> None:
    data = load_yaml("default.yaml")
    data["gpu_node_groups"][0]["max_size"] = 3
    data["observability"] = {"enabled": False}  # fixed replica counts: the decode replicas change is one
    before = template_hashes(data)
    edit(data["serving"])
    after = template_hashes(data)
    assert {name for name in before if before[name] != after[name]} == rolled


@pytest.mark.parametrize("fixture", sorted(SHIPPED))
def test_every_pod_template_carries_its_config_hash(fixture: str) -> None:
    hashes = template_hashes(load_yaml(SHIPPED[fixture]))
    assert hashes and all(len(h) == 16 for h in hashes.values())


@pytest.mark.parametrize(("change", "edit", "rolled"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_worker_not_rolled_by_a_change_launches_exactly_as_before(change: str, edit: Any, rolled: set[str]) -> None:
    """The read-sets behind the hashes (infra/workloads/serving_config.py), held against the worker itself: a change
    that leaves a role's hash alone leaves its vLLM command line and environment alone."""
    from runtime.config import Serving
    from runtime.worker import DecodeWorker, PrefillWorker
    from tests.support.runtime_inputs import p5_host

    data = load_yaml("default.yaml")
    data["gpu_node_groups"][0]["max_size"] = 3
    hashes, before = template_hashes(data), Serving.model_validate(data["serving"])
    edit(data["serving"])
    changed = {name for name, digest in template_hashes(data).items() if digest != hashes[name]}
    after = Serving.model_validate(data["serving"])
    for name, worker in (("pdstack-prefill", PrefillWorker), ("pdstack-decode", DecodeWorker)):
        if name not in changed:
            old, new = (worker(s, p5_host(), "/m", {}).launch() for s in (before, after))
            assert (old.argv, old.env) == (new.argv, new.env), name
