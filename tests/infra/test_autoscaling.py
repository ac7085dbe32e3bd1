"""The autoscaling objects: valid against KEDA 2.20.2's CRDs (closed schema of what we render), aimed at the objects
the workloads really create (a LeaderWorkerSet scales by whole groups), targets that mean the SLO under the HPA's
formula, windows sized to a model load, deployment files that cannot ask for what the GPU pools cannot hold, and in
the synthesized app: KEDA over the observability stack's workspace, only while observability is on."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from infra.cluster.addons import KEDA, KEDA_OPERATOR_SERVICE_ACCOUNT
from infra.config import Deployment, DeploymentError, parse_deployment
from infra.observability.stack import QUERY_ACTIONS
from infra.workload_names import ROUTER
from infra.workloads.autoscaling_objects import (
    MAX_STABILIZATION_S,
    PrometheusServer,
    autoscaling_objects,
    desired_replicas,
    scaling_triggers,
)
from infra.workloads.stack import serving_objects
from tests.infra.keda_schema import (
    PROMETHEUS_METADATA_KNOWN,
    PROMETHEUS_METADATA_REQUIRED,
    SCALED_OBJECT_V1ALPHA1,
    TRIGGER_AUTHENTICATION_V1ALPHA1,
)
from tests.infra.leaderworkerset_schema import LWS_SCALE_SUBRESOURCE
from tests.support.synthesis import SynthesisCache, Synthesized, load_yaml, wide_ep_decode

WORKSPACE = PrometheusServer(
    server_address="https://aps-workspaces.us-east-2.amazonaws.com/workspaces/ws-0123", region="us-east-2"
)
SCHEMAS = {"ScaledObject": SCALED_OBJECT_V1ALPHA1, "TriggerAuthentication": TRIGGER_AUTHENTICATION_V1ALPHA1}


def deployment(**changes: Any) -> Deployment:
    data = copy.deepcopy(load_yaml("default.yaml"))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_deployment(data)


def scaled(d: Deployment, role: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in autoscaling_objects(d, WORKSPACE)
        if o["kind"] == "ScaledObject" and o["metadata"]["name"] == f"pdstack-{role}"
    ]
    return found


@pytest.mark.parametrize("make", [lambda: deployment(), wide_ep_decode], ids=["default", "wide-ep"])
def test_objects_match_the_pinned_keda_schema(make) -> None:
    objects = autoscaling_objects(make(), WORKSPACE)
    assert sorted(o["kind"] for o in objects) == ["ScaledObject", "ScaledObject", "TriggerAuthentication"]
    for obj in objects:
        jsonschema.Draft7Validator(SCHEMAS[obj["kind"]]).validate(obj)
        for trigger in obj["spec"].get("triggers", []):
            assert set(PROMETHEUS_METADATA_REQUIRED) <= set(trigger["metadata"]) <= PROMETHEUS_METADATA_KNOWN
            # the scaler signs with SigV4 only with a region and the aws pod identity behind its authenticationRef
            assert trigger["metadata"]["awsRegion"] == WORKSPACE.region
            assert not trigger["metadata"]["serverAddress"].endswith("/")  # it appends /api/v1/query
            float(trigger["metadata"]["threshold"])
            float(trigger["metadata"]["activationThreshold"])


def test_the_schema_is_closed() -> None:
    obj = scaled(deployment(), "decode")
    for mutate in (
        lambda o: o["spec"].update(minReplicas=1),  # KEDA's field is minReplicaCount
        lambda o: o["spec"]["triggers"][0].update(metricType="Average"),
        lambda o: o["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"].update(
            stabilizationWindowSeconds=7200
        ),
    ):
        broken = json.loads(json.dumps(obj))
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(SCALED_OBJECT_V1ALPHA1).validate(broken)


@pytest.mark.parametrize("make", [lambda: deployment(), wide_ep_decode], ids=["default", "wide-ep"])
def test_each_scaled_object_targets_its_roles_controller(make) -> None:
    d = make()
    workloads = serving_objects(d, "image", autoscaled=True)
    for role in ("prefill", "decode"):
        ref = scaled(d, role)["spec"]["scaleTargetRef"]
        (controller,) = [o for o in workloads if o["metadata"]["name"] == ref["name"] and o["kind"] == ref["kind"]]
        assert controller["apiVersion"] == ref["apiVersion"]
        assert "replicas" not in controller["spec"]  # the HPA owns the count; a deploy must not reset it
        if controller["kind"] == "LeaderWorkerSet":
            # its scale subresource is the group count: the HPA adds and removes whole groups
            assert LWS_SCALE_SUBRESOURCE["specReplicasPath"] == ".spec.replicas"
            assert controller["spec"]["leaderWorkerTemplate"]["size"] == d.serving.role(role).nodes_per_replica


def test_prefill_target_keeps_the_backlog_within_its_share_of_the_ttft_slo() -> None:
    """Four router replicas report 1.5, 1.0, 0.5 and 0.5 s of backlog (3.5 s of one replica's work). With a 2 s TTFT
    SLO of which half may be backlog, the HPA asks for 4 prefill replicas: 3.5 s over 4 is under 1 s each."""
    d = deployment(
        slo__ttft_seconds=2.0,
        autoscaling__prefill__max_replicas=2,
        gpu_node_groups=[{**load_yaml("default.yaml")["gpu_node_groups"][0], "max_size": 4}],
    )
    (trigger,) = scaling_triggers(d, "prefill")
    assert "sum(" in trigger.query  # summed across router replicas: each counts only what it routed
    backlog = 1.5 + 1.0 + 0.5 + 0.5
    assert desired_replicas(backlog, trigger.target, current=1, minimum=0, maximum=8) == 4
    assert desired_replicas(backlog, trigger.target, current=1, minimum=0, maximum=2) == 2  # clamped to max
    stricter = deployment(slo__ttft_seconds=1.0)
    (strict,) = scaling_triggers(stricter, "prefill")
    assert desired_replicas(backlog, strict.target, current=1, minimum=0, maximum=8) == 7  # tighter SLO, more


def test_decode_holds_kv_usage_and_counts_waiting_at_engines_and_routers() -> None:
    d = deployment()
    kv, waiting = scaling_triggers(d, "decode")
    # three decode engines at 0.9 KV usage each: the HPA wants 4 replicas to bring them to about 0.7
    assert desired_replicas(3 * 0.9, kv.target, current=3, minimum=1, maximum=8) == 4
    assert desired_replicas(3 * 0.78, kv.target, current=3, minimum=1, maximum=8) == 3  # within tolerance
    assert "vllm:num_requests_waiting" in waiting.query and "pdstack_router_admission_queue_depth" in waiting.query
    assert "or vector(0)" in waiting.query  # a side with no series does not blank the other


def test_windows_are_sized_to_a_model_load() -> None:
    d = deployment(workloads__startup_minutes=20)
    prefill, decode = scaled(d, "prefill")["spec"], scaled(d, "decode")["spec"]
    assert prefill["minReplicaCount"] == 0 and decode["minReplicaCount"] == 1
    assert prefill["cooldownPeriod"] == prefill["initialCooldownPeriod"] == 20 * 60
    assert "cooldownPeriod" not in decode  # only scaling to zero uses it
    for spec in (prefill, decode):
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 20 * 60
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    slow = scaled(deployment(workloads__startup_minutes=90), "decode")["spec"]
    assert (
        slow["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        == MAX_STABILIZATION_S
    )  # the Kubernetes limit


def test_decode_may_not_scale_to_zero() -> None:
    with pytest.raises(DeploymentError, match=r"decode.min_replicas must be at least 1"):
        deployment(autoscaling__decode__min_replicas=0)


def test_max_replicas_must_fit_the_gpu_pools() -> None:
    with pytest.raises(DeploymentError, match=r"need 3 p5.48xlarge nodes .* at most 2"):
        deployment(
            autoscaling__decode__max_replicas=2, serving__prefill__tensor_parallel=8, serving__decode__tensor_parallel=8
        )  # a node per replica: 1 prefill + 2 decode


def test_the_starting_count_lies_within_the_bounds() -> None:
    with pytest.raises(DeploymentError, match=r"autoscaling.prefill: serving.prefill.replicas=1 .* max_replicas=.*"):
        deployment(autoscaling__prefill__min_replicas=2, autoscaling__prefill__max_replicas=2)


def test_without_scaled_objects_the_counts_stay_fixed() -> None:
    d = deployment(autoscaling__enabled=False)
    assert autoscaling_objects(d, WORKSPACE) == []
    for autoscaled, expected in ((False, [1, 1]), (True, [None, None])):
        controllers = [
            o
            for o in serving_objects(deployment(), "image", autoscaled=autoscaled)
            if o["kind"] == "Deployment" and "llm-d.ai/role" in o["metadata"]["labels"]
        ]
        assert [o["spec"].get("replicas") for o in controllers] == expected


def test_autoscaling_follows_the_metrics_pipeline() -> None:
    assert deployment().autoscaled and not deployment(observability__enabled=False).autoscaled
    with pytest.raises(DeploymentError, match=r"autoscaling.enabled: true reads its signals .* observability.enabled"):
        deployment(observability__enabled=False, autoscaling__enabled=True)
    assert not deployment(autoscaling__enabled=False).autoscaled


# --- in the synthesized app ------------------------------------------------------------------------------------------


def test_the_default_app_synthesizes_keda_over_the_observability_workspace(default: Synthesized) -> None:
    """The workloads stack gets the observability stack's workspace: KEDA's chart, the ScaledObjects and their
    TriggerAuthentication are in the template, the operator may only read that workspace, and its Pod Identity
    association exists before the operator pod."""
    autoscaling = default.stacks.workloads.autoscaling
    assert autoscaling is not None and default.observability is not None
    workloads = default.workloads.to_json()["Resources"]
    (_keda_id, keda) = only_item({k: r for k, r in workloads.items() if r["Type"] == "Custom::AWSCDK-EKS-HelmChart"})
    assert (keda["Properties"]["Chart"], keda["Properties"]["Version"]) == (KEDA.chart, KEDA.version)
    manifests = [
        json.dumps(r["Properties"]["Manifest"])
        for r in workloads.values()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
    ]
    assert sum('\\"kind\\":\\"ScaledObject\\"' in m for m in manifests) == 1
    assert sum('\\"kind\\":\\"TriggerAuthentication\\"' in m for m in manifests) == 1

    role = default.stacks.workloads.resolve(autoscaling.operator_role.node.default_child.logical_id)
    (policy,) = [
        p
        for p in default.workloads.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == sorted(QUERY_ACTIONS)
    # the observability stack's workspace ARN, imported: nothing else
    workspace_id = default.stacks.observability.resolve(default.stacks.observability.workspace.workspace.logical_id)
    assert "Fn::ImportValue" in statement["Resource"] and workspace_id in json.dumps(statement["Resource"])
    assert default.stacks.observability in default.stacks.workloads.dependencies

    (association_id,) = [
        k
        for k, a in default.workloads.find_resources("AWS::EKS::PodIdentityAssociation").items()
        if a["Properties"]["ServiceAccount"] == KEDA_OPERATOR_SERVICE_ACCOUNT
    ]
    assert association_id in keda.get("DependsOn", [])
    # ScaledObjects own the workers' counts
    for controller in (o for o in default.stacks.workloads.objects if o["kind"] in ("Deployment", "LeaderWorkerSet")):
        assert ("replicas" in controller["spec"]) == (controller["metadata"]["name"] == ROUTER), controller["metadata"]


def test_without_observability_there_is_no_autoscaling(synthesized: SynthesisCache) -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["observability"] = {"enabled": False}
    stacks = synthesized.get(parse_deployment(data)).stacks
    assert stacks.workloads.autoscaling is None
    workers = [o for o in stacks.workloads.objects if o["kind"] == "Deployment" and o["metadata"]["name"] != ROUTER]
    assert workers and all(w["spec"]["replicas"] == 1 for w in workers)


def only_item(found: dict[str, Any]) -> tuple[str, Any]:
    (item,) = found.items()
    return item
