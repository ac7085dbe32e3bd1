"""Several models on one cluster (issue 25 item 3): the ``models`` form of a deployment file, one serving unit per
model, each in its own namespace with its own instance label, rendered by the same renderers through the unit's view;
the one-model form renders exactly what it rendered before units existed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node, system_controllers
from infra.workloads.serving_config import rendered_serving
from infra.workloads.stack import serving_objects
from runtime.config import Serving
from runtime.router.config import RouterConfig
from runtime.router.discovery.endpoint_slices import EndpointSliceDiscovery
from runtime.router.engines.model_catalog import ModelCatalog
from runtime.router.engines.registry import EngineRegistry
from runtime.router.router_metrics import RouterMetrics
from tests.support.serving_units import two_model_deployment, two_models_data
from tests.support.synthesis import Synthesized, load_yaml

INSTANCE = "app.kubernetes.io/instance"
# Selects the smoke Job's pods, which `python -m infra smoke` creates in the unit's namespace: namespaced, not
# instance-labelled.
SMOKE_POLICY = "pdstack-smoke-return-traffic"


def objects_of(deployment: Any) -> dict[str, list[dict[str, Any]]]:
    """Every unit's objects, by unit name."""
    return {
        str(unit.name): serving_objects(deployment.for_unit(unit), "image", autoscaled=False)
        for unit in deployment.units
    }


def test_a_one_model_deployment_keeps_its_object_names_namespace_and_labels() -> None:
    """Renaming a live object deletes and recreates it (a deploy would roll every pod): the one-model form's names,
    namespace and instance label are pinned as they were before serving units existed."""
    default = parse_deployment(load_yaml("default.yaml"))
    (unit,) = default.units
    assert unit.name is None and default.for_unit(unit) is default
    objects = serving_objects(default, "image")
    assert {o["metadata"].get("namespace", "pdstack") for o in objects} == {"pdstack"}
    assert {o["metadata"]["labels"][INSTANCE] for o in objects} == {"pdstack"}
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Namespace", "pdstack"),
        ("ConfigMap", "pdstack-serving"),
        ("ServiceAccount", "pdstack-prefill"),
        ("ServiceAccount", "pdstack-decode"),
        ("ServiceAccount", "pdstack-router"),
        ("NetworkPolicy", "pdstack-default-deny-ingress"),
        ("NetworkPolicy", "pdstack-prefill-ingress"),
        ("NetworkPolicy", "pdstack-decode-ingress"),
        ("NetworkPolicy", "pdstack-router-ingress"),
        ("NetworkPolicy", "pdstack-router-return-traffic"),
        ("NetworkPolicy", "pdstack-prefill-return-traffic"),
        ("NetworkPolicy", "pdstack-decode-return-traffic"),
        ("NetworkPolicy", "pdstack-smoke-return-traffic"),
        ("Deployment", "pdstack-prefill"),
        ("Service", "pdstack-prefill-engines"),
        ("PodDisruptionBudget", "pdstack-prefill"),
        ("Deployment", "pdstack-decode"),
        ("Service", "pdstack-decode-engines"),
        ("PodDisruptionBudget", "pdstack-decode"),
        ("Role", "pdstack-router"),
        ("RoleBinding", "pdstack-router"),
        ("Deployment", "pdstack-router"),
        ("Service", "pdstack-router"),
        ("PodDisruptionBudget", "pdstack-router"),
    ]


def test_each_model_is_a_unit_in_its_own_namespace_with_its_own_instance() -> None:
    deployment = two_model_deployment()
    assert [(u.name, u.instance, u.namespace) for u in deployment.units] == [
        ("llama-8b", "two-models-llama-8b", "pdstack-llama-8b"),
        ("llama-70b", "two-models-llama-70b", "pdstack-llama-70b"),
    ]
    # the first inherits the top-level workloads, the second brings its own router workload
    first, second = deployment.units
    assert first.workloads.router.cpu == "2" and second.workloads.router.cpu == "1"
    for name, objects in objects_of(deployment).items():
        unit = next(u for u in deployment.units if u.name == name)
        namespaced = [o for o in objects if o["kind"] != "Namespace"]
        assert {o["metadata"]["namespace"] for o in namespaced} == {unit.namespace}
        assert {o["metadata"]["labels"][INSTANCE] for o in objects} == {unit.instance}


def test_the_units_selectors_are_disjoint() -> None:
    """No selector of one unit (controllers, Services, budgets, policies, the same-zone affinity) matches a pod of
    the other, even were they in one namespace."""
    deployment = two_model_deployment()
    by_unit = objects_of(deployment)

    def pod_labels(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] == "Deployment"]

    def selectors(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        for o in objects:
            spec = o.get("spec", {})
            if o["kind"] == "Service" and "selector" in spec:
                found.append(spec["selector"])
            elif o["kind"] in ("Deployment", "PodDisruptionBudget"):
                found.append(spec["selector"]["matchLabels"])
            elif o["kind"] == "NetworkPolicy" and spec["podSelector"] and o["metadata"]["name"] != SMOKE_POLICY:
                found.append(spec["podSelector"]["matchLabels"])
        for o in objects:
            if o["kind"] == "Deployment":
                affinity = o["spec"]["template"]["spec"].get("affinity", {})
                for term in affinity.get("podAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", []):
                    found.append(term["labelSelector"]["matchLabels"])
        return found

    objects_a, objects_b = by_unit.values()
    for own, other in ((objects_a, objects_b), (objects_b, objects_a)):
        assert selectors(own)
        for chosen in selectors(own):
            assert any(chosen.items() <= labels.items() for labels in pod_labels(own)), chosen
            assert not any(chosen.items() <= labels.items() for labels in pod_labels(other)), chosen


def test_each_router_discovers_engines_in_its_own_namespace_only(tmp_path: Path) -> None:
    """The router lists and watches EndpointSlices of one namespace (runtime/router/discovery/endpoint_slices.py),
    the one its unit's ConfigMap names, with a namespaced Role: it cannot see the other unit's engines."""
    deployment = two_model_deployment()
    (tmp_path / "token").write_text("t")
    for unit in deployment.units:
        view = deployment.for_unit(unit)
        serving = Serving.model_validate(rendered_serving(view))
        kubernetes = serving.router.discovery.kubernetes
        assert kubernetes is not None
        config = kubernetes.model_copy(update={"api_server": "https://api", "service_account_dir": str(tmp_path)})
        source = EndpointSliceDiscovery(config, lambda ip, role: None)
        assert source.url == f"https://api/apis/discovery.k8s.io/v1/namespaces/{unit.namespace}/endpointslices"
        objects = serving_objects(view, "image")
        assert not [o for o in objects if o["kind"].startswith("Cluster")]
        (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
        assert binding["metadata"]["namespace"] == unit.namespace and binding["roleRef"]["kind"] == "Role"


def test_each_router_lists_its_own_model() -> None:
    """/v1/models answers from the catalog (runtime/router/engines/model_catalog.py): before any engine reports,
    the unit's configured served name, and no other unit's."""
    deployment = two_model_deployment()
    listed = []
    for unit in deployment.units:
        (config_map,) = [o for o in serving_objects(deployment.for_unit(unit), "image") if o["kind"] == "ConfigMap"]
        serving = Serving.model_validate(yaml.safe_load(config_map["data"]["serving.yaml"]))
        registry = EngineRegistry(RouterConfig(), RouterMetrics())
        listed.append([m["id"] for m in ModelCatalog(serving.model.served_name, registry).listing()["data"]])
    assert listed == [["llama-3.1-8b-instruct"], ["llama-3.3-70b-instruct"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(serving=copy.deepcopy(d["models"][1]["serving"])), "serving and models are both set"),
        (lambda d: d.pop("models"), "the deployment serves nothing"),
        (lambda d: d["workloads"].update(namespace="shared"), "workloads.namespace='shared' with models"),
        (lambda d: d["models"][1].update(name="llama-8b"), "models names must be unique; repeated: llama-8b"),
        (
            lambda d: d["models"][1]["workloads"].update(namespace="pdstack-llama-8b"),
            "namespaces must differ between models",
        ),
        (
            lambda d: d["models"][1]["serving"]["model"].update(served_name="llama-3.1-8b-instruct"),
            "serving.model.served_name must differ between models",
        ),
        (lambda d: d["models"][1].update(name="Big"), "models.1.name"),
        (
            lambda d: d["models"][1]["serving"]["decode"].update(instance_type="p4d.24xlarge"),
            "models[llama-70b]: serving.decode.instance_type='p4d.24xlarge' has no GPU nodes",
        ),
        (
            lambda d: d["models"][1]["workloads"]["router"].pop("allowed_client_cidrs"),
            "models[llama-70b]: workloads.router.allowed_client_cidrs is required",
        ),
    ],
    ids=[
        "both forms",
        "neither form",
        "shared namespace",
        "same name",
        "same namespace",
        "same served name",
        "bad name",
        "no nodes for a unit",
        "a unit's own workloads",
    ],
)
def test_a_bad_models_list_is_refused_naming_the_unit(change: Any, message: str) -> None:
    data = two_models_data()
    change(data)
    with pytest.raises(DeploymentError) as refused:
        two_model_deployment(data)
    assert message in str(refused.value), str(refused.value)


def test_gpu_capacity_counts_every_unit_on_the_shared_pools() -> None:
    """Each unit fits the two p5 nodes alone; together (2 + 8 GPUs, then 2 + 16) they must fit as well."""
    data = shared_pool_data()
    two_model_deployment(data)  # 10 GPUs on two 8-GPU nodes
    data["models"][1]["serving"]["prefill"]["replicas"] = 2
    data["models"][1]["serving"]["decode"]["replicas"] = 2
    data["autoscaling"] = {"enabled": False}
    alone = copy.deepcopy(data)
    alone["models"] = alone["models"][1:]
    two_model_deployment(alone)  # 16 GPUs: the second unit alone fits
    with pytest.raises(DeploymentError, match=r"every model.s prefill and decode need 3 p5\.48xlarge nodes"):
        two_model_deployment(data)


def shared_pool_data() -> dict[str, Any]:
    """two-models.yaml with both models on one shared pool of two p5 nodes."""
    data = two_models_data()
    del data["models"][1]["gpu_pools"]
    data["gpu_node_groups"] = data["gpu_node_groups"][:1]
    data["gpu_node_groups"][0].update(desired_size=2, max_size=2)
    return data


def test_a_dedicated_pool_takes_its_models_workers_and_no_others() -> None:
    """The 70B's workers select its pool by the pool label and tolerate its taint; the 8B's select the shared pool
    and do not tolerate the 70B's taint."""
    deployment = two_model_deployment()
    placement = {}
    for unit in deployment.units:
        for obj in serving_objects(deployment.for_unit(unit), "image"):
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] in ("pdstack-prefill", "pdstack-decode"):
                spec = obj["spec"]["template"]["spec"]
                required = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                (term,) = required["nodeSelectorTerms"]
                tolerated = {t["key"] for t in spec["tolerations"]}
                placement[(unit.name, obj["metadata"]["name"])] = (term["matchExpressions"], tolerated)
    for role in ("pdstack-prefill", "pdstack-decode"):
        assert placement[("llama-8b", role)] == (
            [{"key": "pdstack.io/node-group", "operator": "In", "values": ["p5"]}],
            {"nvidia.com/gpu"},
        )
        assert placement[("llama-70b", role)] == (
            [{"key": "pdstack.io/node-group", "operator": "In", "values": ["p5-70b"]}],
            {"nvidia.com/gpu", "pdstack.io/model"},
        )


def test_without_dedicated_pools_the_workers_select_by_instance_type_alone() -> None:
    deployment = two_model_deployment(shared_pool_data())
    for objects in objects_of(deployment).values():
        for obj in objects:
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] != "pdstack-router":
                assert set(obj["spec"]["template"]["spec"]["affinity"]) == {"podAffinity"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["models"][1].update(gpu_pools=["p4"]),
            "models[llama-70b].gpu_pools: 'p4' is not a GPU pool of this deployment; pools: p5, p5-70b",
        ),
        (
            lambda d: d["models"][0].update(gpu_pools=["p5-70b"]),
            "models[llama-70b].gpu_pools: 'p5-70b' is already dedicated to models[llama-8b]",
        ),
        (
            lambda d: (d["models"][1].pop("gpu_pools"), d["models"][0].update(gpu_pools=["p5", "p5-70b"])),
            (
                "models[llama-70b]: serving.prefill.instance_type='p5.48xlarge' has no GPU nodes; gpu_node_groups that "
                "this model may use (the others are dedicated to other models) provide: none"
            ),
        ),
        (
            lambda d: d["models"][1]["serving"]["decode"].update(replicas=2),
            "models[llama-70b] (on GPU pools p5-70b): prefill and decode need 2 p5.48xlarge nodes",
        ),
    ],
    ids=["unknown pool", "pool taken twice", "no pool left for a model", "a dedicated pool too small"],
)
def test_dedicated_pools_are_checked(change: Any, message: str) -> None:
    """A dedicated pool is one the deployment has, taken once, and holds its model: the shared pool's room does not
    count for it (the 70B's second decode would fit the shared node's free GPUs, not its own pool)."""
    data = two_models_data()
    data["autoscaling"] = {"enabled": False}
    change(data)
    with pytest.raises(DeploymentError) as refused:
        two_model_deployment(data)
    assert message in str(refused.value), str(refused.value)


def test_routers_of_every_unit_share_the_system_nodes() -> None:
    """Four routers of 2 CPU (two units, no surge) and the controllers do not fit two m7i.xlarge system nodes,
    though each unit's two would."""
    data = two_models_data()
    data["cluster"]["system_instance_type"] = "m7i.xlarge"
    data["models"][1]["workloads"]["router"].update(cpu="2", memory="4Gi")
    alone = copy.deepcopy(data)
    alone["models"] = alone["models"][:1]
    two_model_deployment(alone)
    with pytest.raises(DeploymentError, match=r"models\[llama-8b\]: 2 routers .* and models\[llama-70b\]: 2 routers"):
        two_model_deployment(data)


def test_hugepages_and_controllers_follow_every_unit() -> None:
    """A node reserves the hugepages the most demanding unit's workers need (any unit's pods may land on it); the
    cluster runs KEDA when any unit autoscales."""
    data = two_models_data()
    data["models"][1]["workloads"]["hugepages_2mi"] = "10240Mi"
    data["models"][1]["serving"]["prefill"]["tensor_parallel"] = 1
    deployment = two_model_deployment(data)
    # the second unit's 1-GPU prefill: 8 pods a node of 5120 pages each
    assert hugepages_2mi_pages_per_node(deployment, "p5.48xlarge") == 8 * 5120
    for unit in deployment.units:
        view = deployment.for_unit(unit)
        assert hugepages_2mi_pages_per_node(view, "p5.48xlarge") == 8 * 5120
    data = two_models_data()
    data["autoscaling"] = {"enabled": False}
    data["models"][1]["autoscaling"] = {"enabled": True}
    assert "keda-operator" in system_controllers(two_model_deployment(data))
    data["models"][1]["autoscaling"] = {"enabled": False}
    assert "keda-operator" not in system_controllers(two_model_deployment(data))


def test_a_several_model_deployment_has_no_single_serving_section() -> None:
    """Code that reads ``deployment.serving`` on a several-model deployment is wrong (which model?): it fails."""
    with pytest.raises(ValueError, match="serves several models"):
        _ = two_model_deployment().serving


# The workloads stack's logical ids of the shipped capacity-block deployment (every optional part: the load balancer
# controller, the API keys, autoscaling, an s3:// model) as synthesized at 5d49e48, before serving units: a changed
# id replaces the resource (a new manifest deletes and re-creates every serving object).
CAPACITY_BLOCK_WORKLOADS_IDS = {
    "AutoscalingKedaA6AC34C5",
    "AutoscalingKedaOperatorIdentity45E0FA2A",
    "AutoscalingKedaOperatorRoleDefaultPolicy4081AF68",
    "AutoscalingKedaOperatorRoleE50D98BB",
    "AutoscalingScaledObjects18644EF4",
    "LoadBalancerControllerChartE487422F",
    "LoadBalancerControllerPodIdentity8D0522BF",
    "LoadBalancerControllerRole0BFA3E00",
    "ModelReaderA885B1DB",
    "ModelReaderDefaultPolicy436770EE",
    "ModelReaderpdstackdecode",
    "ModelReaderpdstackprefill",
    "RouterApiKeysApiKeysReader0553786F",
    "RouterApiKeysApiKeysReaderDefaultPolicy2E7C33ED",
    "RouterApiKeysApiKeysReaderIdentityE5D118AA",
    "RouterApiKeysSecretsStoreCsiDriver970A998B",
    "RouterApiKeysSecretsStoreProviderAws03330C42",
    "Serving7A42E1DA",
}


def test_a_one_model_workloads_stack_keeps_its_logical_ids(capacity_block: Synthesized) -> None:
    assert set(capacity_block.workloads.to_json()["Resources"]) == CAPACITY_BLOCK_WORKLOADS_IDS
    assert set(capacity_block.workloads.to_json()["Outputs"]) == {"Namespace", "RouterService"}


def test_the_workloads_stack_renders_every_unit(two_models: Synthesized) -> None:
    """One manifest per model, each holding exactly its unit's objects; each unit's Pod Identity associations in its
    namespace; KEDA once, each unit's ScaledObjects querying its own namespace."""
    deployment = two_models.deployment
    stack = two_models.stacks.workloads
    resources = two_models.workloads.to_json()["Resources"]
    assert [u.node.id for u in stack.units] == [u.name for u in deployment.units]
    manifests = [r for r in resources.values() if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"]
    serving = [m for m in manifests if '\\"kind\\":\\"Namespace\\"' in json.dumps(m["Properties"]["Manifest"])]
    assert len(serving) == 2
    for unit, unit_workloads in zip(deployment.units, stack.units, strict=True):
        assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in unit_workloads.objects} == {
            unit.namespace
        }
        assert unit_workloads.scaled_objects is not None
        for scaled in unit_workloads.scaled_objects.objects:
            assert scaled["metadata"]["namespace"] == unit.namespace
            for trigger in scaled["spec"].get("triggers", []):
                assert f'namespace="{unit.namespace}"' in trigger["metadata"]["query"]
    associations = [
        (a["Properties"]["Namespace"], a["Properties"]["ServiceAccount"])
        for a in two_models.workloads.find_resources("AWS::EKS::PodIdentityAssociation").values()
    ]
    for unit in deployment.units:
        assert {(unit.namespace, f"pdstack-{role}") for role in ("prefill", "decode", "router")} <= set(associations)
    charts = [r for r in resources.values() if r["Type"] == "Custom::AWSCDK-EKS-HelmChart"]
    assert [c["Properties"]["Chart"] for c in charts] == ["keda"]
    assert stack.objects == [o for u in stack.units for o in u.objects]
