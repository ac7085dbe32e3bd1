"""The router's API keys from AWS Secrets Manager (workloads.router.api_keys_secret): the config check, the mount in
the router pods, the SecretProviderClass, the routers' IAM scope, the pinned charts and their DaemonSets' room on the
system nodes. capacity-block.yaml is the shipped deployment that names a secret; default.yaml names none."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk.assertions import Template

from infra.cluster.addons import SECRET_ROTATION_POLL_INTERVAL, SECRETS_STORE_CSI_DRIVER, SECRETS_STORE_PROVIDER_AWS
from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity import node_capacity
from infra.workload_names import (
    API_KEYS_FILE,
    API_KEYS_MOUNT,
    CONFIG_FILE,
    CONFIG_HASH_ANNOTATION,
    POOL_LABEL,
    ROUTER,
    ROUTER_API_KEYS,
)
from infra.workloads.router_api_keys import api_keys_reader_role
from infra.workloads.router_objects import SECRETS_STORE_DRIVER
from infra.workloads.serving_config import config_hash
from runtime.config import Serving
from runtime.router.api_keys import ApiKeys
from tests.infra.scheduling import can_place, pod_requests
from tests.support.rehearsal import chart_pods, eks_nodes, gpu_nodes, rehearsal_cluster
from tests.support.synthesis import SHIPPED, Synthesized, load_yaml
from tests.support.workload_objects import find, objects_of, pod_spec

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:team/router-keys-Ab12Cd"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _capacity_block(**router: Any) -> dict[str, Any]:
    data = copy.deepcopy(load_yaml("capacity-block.yaml"))
    data["workloads"]["router"].update(router)
    return data


def _router(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "Deployment", ROUTER)


# --- the config check ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("arn:aws:secretsmanager:us-east-2:123456789012:secret:router-keys", "not a whole Secrets Manager secret ARN"),
        ("router keys", "not a Secrets Manager secret name"),
        ("x" * 513, "not a Secrets Manager secret name"),
    ],
)
def test_a_secret_is_named_or_given_by_its_whole_arn(secret: str, problem: str) -> None:
    with pytest.raises(DeploymentError, match=problem):
        parse_deployment(_capacity_block(api_keys_secret=secret))
    for accepted in ("team/router-keys_1+=.@", SECRET_ARN):
        assert parse_deployment(_capacity_block(api_keys_secret=accepted)).workloads.router.api_keys_secret == accepted


def test_the_keys_come_from_one_place() -> None:
    data = _capacity_block()
    data["serving"].setdefault("router", {})["api_keys_path"] = "/somewhere/keys"
    with pytest.raises(DeploymentError, match=r"remove serving\.router\.api_keys_path"):
        parse_deployment(data)


def test_a_kms_key_needs_the_secret_it_encrypts() -> None:
    data = _capacity_block(api_keys_kms_key_arn=KEY_ARN)
    del data["workloads"]["router"]["api_keys_secret"]
    with pytest.raises(DeploymentError, match="api_keys_kms_key_arn is set without"):
        parse_deployment(data)


# --- the objects: the mount, the SecretProviderClass, the rendered api_keys_path --------------------------------------


def test_the_routers_mount_the_secret_read_only_where_their_config_points() -> None:
    deployment = parse_deployment(load_yaml("capacity-block.yaml"))
    objects = objects_of(deployment)
    spec = pod_spec(_router(objects))
    (volume,) = [v for v in spec["volumes"] if "csi" in v]
    assert volume["csi"] == {
        "driver": SECRETS_STORE_DRIVER,
        "readOnly": True,
        "volumeAttributes": {"secretProviderClass": ROUTER_API_KEYS},
    }
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    # read-only, and no subPath: the driver rewrites the file on rotation, a subPath would pin the first copy
    assert mount == {"name": volume["name"], "mountPath": API_KEYS_MOUNT, "readOnly": True}
    config = find(objects, "ConfigMap", "pdstack-serving")
    serving = Serving.model_validate(yaml.safe_load(config["data"][CONFIG_FILE]))
    assert serving.router.api_keys_path == API_KEYS_MOUNT


def test_the_provider_class_names_the_secret_and_the_pod_identity() -> None:
    deployment = parse_deployment(load_yaml("capacity-block.yaml"))
    spc = find(objects_of(deployment), "SecretProviderClass", ROUTER_API_KEYS)
    assert spc["metadata"]["namespace"] == deployment.workloads.namespace
    parameters = spc["spec"]["parameters"]
    assert spc["spec"]["provider"] == "aws"
    assert yaml.safe_load(parameters["objects"]) == [
        {"objectName": "pdstack-cb/router-api-keys", "objectType": "secretsmanager", "objectAlias": API_KEYS_FILE}
    ]
    assert parameters["usePodIdentity"] == "true" and parameters["region"] == "us-east-2"
    # a secret given by ARN is read in its own region
    other = parse_deployment(_capacity_block(api_keys_secret=SECRET_ARN))
    assert (
        find(objects_of(other), "SecretProviderClass", ROUTER_API_KEYS)["spec"]["parameters"]["region"] == "eu-west-1"
    )


def test_the_mounted_file_is_what_the_router_reads(tmp_path: Path) -> None:
    """The provider writes the secret's value to <mount>/<objectAlias>; the router reads every file of the
    directory its config names, one key per line."""
    (tmp_path / API_KEYS_FILE).write_text("key-one\n\nkey-two\n")
    keys = ApiKeys(str(tmp_path))
    assert keys.allows("Bearer key-one") and keys.allows("Bearer key-two") and not keys.allows("Bearer key-three")


def test_without_a_secret_nothing_is_mounted_and_nothing_authenticates() -> None:
    objects = objects_of(parse_deployment(load_yaml("default.yaml")))
    assert not [o for o in objects if o["kind"] == "SecretProviderClass"]
    assert not [v for v in pod_spec(_router(objects))["volumes"] if "csi" in v]
    config = find(objects, "ConfigMap", "pdstack-serving")
    assert yaml.safe_load(config["data"][CONFIG_FILE])["router"]["api_keys_path"] is None


def test_naming_another_secret_rolls_the_routers_and_only_them() -> None:
    before = parse_deployment(load_yaml("capacity-block.yaml"))
    after = parse_deployment(_capacity_block(api_keys_secret="pdstack-cb/other-keys"))
    templates = {
        name: [
            o["spec"]["template"]["metadata"]["annotations"]
            if "template" in o["spec"]
            else o["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"].get("annotations")
            for o in objects_of(d)
            if o["kind"] in ("Deployment", "LeaderWorkerSet")
        ]
        for name, d in (("before", before), ("after", after))
    }
    changed = [i for i, (b, a) in enumerate(zip(templates["before"], templates["after"], strict=True)) if b != a]
    names = [o["metadata"]["name"] for o in objects_of(before) if o["kind"] in ("Deployment", "LeaderWorkerSet")]
    assert [names[i] for i in changed] == [ROUTER]
    # turning authentication on changes what the routers read (their api_keys_path), so their config hash
    without = copy.deepcopy(load_yaml("capacity-block.yaml"))
    del without["workloads"]["router"]["api_keys_secret"]
    assert config_hash(parse_deployment(without), "router") != config_hash(before, "router")
    assert config_hash(parse_deployment(without), "decode") == config_hash(before, "decode")
    assert CONFIG_HASH_ANNOTATION in templates["before"][changed[0]]


# --- the templates: charts, IAM scope, ordering ----------------------------------------------------------------------


def _charts(synth: Synthesized) -> dict[str, Mapping[str, Any]]:
    return {
        c["Properties"]["Chart"]: c for c in synth.workloads.find_resources("Custom::AWSCDK-EKS-HelmChart").values()
    }


def test_the_pinned_charts_rotate_and_sync_no_kubernetes_secret(capacity_block: Synthesized) -> None:
    charts = _charts(capacity_block)
    driver, provider = charts[SECRETS_STORE_CSI_DRIVER.chart], charts[SECRETS_STORE_PROVIDER_AWS.chart]
    assert (driver["Properties"]["Version"], provider["Properties"]["Version"]) == ("1.6.0", "3.1.1")
    values = json.loads(driver["Properties"]["Values"])
    assert values["enableSecretRotation"] is True and values["rotationPollInterval"] == SECRET_ROTATION_POLL_INTERVAL
    assert values["syncSecret"] == {"enabled": False}
    assert {"audience": "pods.eks.amazonaws.com"} in values["tokenRequests"]  # ASCP's Pod Identity token
    # the provider chart's own driver dependency (a floating "^1") stays off: one driver, the pinned one
    assert json.loads(provider["Properties"]["Values"])["secrets-store-csi-driver"] == {"install": False}


def test_no_secret_installs_no_secrets_store(default: Synthesized) -> None:
    assert not set(SECRETS_STORE_CHARTS) & set(_charts(default))
    assert default.stacks.workloads.api_keys is None


def _role_of(synth: Synthesized, account: str) -> dict[str, Any]:
    associations = [
        a["Properties"]
        for a in synth.workloads.find_resources("AWS::EKS::PodIdentityAssociation").values()
        if a["Properties"]["ServiceAccount"] == account
    ]
    (association,) = associations  # EKS takes one association per service account
    return association["RoleArn"]


def _statements(synth: Synthesized, role_arn: dict[str, Any]) -> list[dict[str, Any]]:
    role = role_arn["Fn::GetAtt"][0]
    return [
        s
        for p in synth.workloads.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_only_the_routers_may_read_the_secret_and_only_that_one(capacity_block: Synthesized) -> None:
    router = _statements(capacity_block, _role_of(capacity_block, ROUTER))
    (secret,) = [s for s in router if any(a.startswith("secretsmanager:") for a in _actions(s))]
    assert sorted(_actions(secret)) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert json.dumps(secret["Resource"]).endswith(':secret:pdstack-cb/router-api-keys-??????"]]}')
    assert "Condition" not in secret
    # the routers still read the model's tokenizer with the same role
    assert {"s3:GetObject", "s3:ListBucket"} <= {a for s in router for a in _actions(s)}
    # nobody else gets any secretsmanager action
    text = json.dumps(
        [
            p
            for k, p in capacity_block.workloads.find_resources("AWS::IAM::Policy").items()
            if p["Properties"]["Roles"] != [{"Ref": _role_of(capacity_block, ROUTER)["Fn::GetAtt"][0]}]
        ]
    )
    assert "secretsmanager" not in text
    for worker in ("pdstack-prefill", "pdstack-decode"):
        assert _role_of(capacity_block, worker) != _role_of(capacity_block, ROUTER)


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_the_routers_wait_for_the_driver_and_their_identity(capacity_block: Synthesized) -> None:
    """The SecretProviderClass CRD comes with the driver's chart, and Pod Identity credentials are injected at pod
    creation: the serving manifest (routers and their SecretProviderClass) is applied after both."""
    stack = capacity_block.stacks.workloads
    resources = capacity_block.workloads.to_json()["Resources"]
    manifest = resources[stack.resolve(stack.manifest.node.default_child.logical_id)]
    charts = {
        k
        for k, c in capacity_block.workloads.find_resources("Custom::AWSCDK-EKS-HelmChart").items()
        if c["Properties"]["Chart"] in (SECRETS_STORE_CSI_DRIVER.chart, SECRETS_STORE_PROVIDER_AWS.chart)
    }
    associations = {
        k
        for k, a in capacity_block.workloads.find_resources("AWS::EKS::PodIdentityAssociation").items()
        if a["Properties"]["ServiceAccount"] == ROUTER
    }
    assert len(charts) == 2 and len(associations) == 1
    assert charts | associations <= set(manifest["DependsOn"])
    assert '"kind":"SecretProviderClass"' in json.dumps(manifest["Properties"]["Manifest"]).replace('\\"', '"')


@pytest.mark.parametrize("fixture", SHIPPED)
def test_every_service_account_has_at_most_one_pod_identity(fixture: str, request: pytest.FixtureRequest) -> None:
    """EKS refuses a second association for a service account (CreatePodIdentityAssociation): the routers of an
    s3:// model that mount their keys get one role for both."""
    synth: Synthesized = request.getfixturevalue(fixture)
    accounts = [
        (a["Properties"]["Namespace"], a["Properties"]["ServiceAccount"])
        for t in (synth.workloads, synth.cluster)
        for a in t.find_resources("AWS::EKS::PodIdentityAssociation").values()
    ]
    assert len(accounts) == len(set(accounts)), accounts


def test_a_secret_under_a_customer_managed_key_is_decrypted_through_secrets_manager_only() -> None:
    deployment = parse_deployment(_capacity_block(api_keys_secret=SECRET_ARN, api_keys_kms_key_arn=KEY_ARN))
    stack = cdk.Stack(cdk.App(), "Keys")
    api_keys_reader_role(stack, deployment.workloads.router)
    (policy,) = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    statements = [{**s, "Action": sorted(_actions(s))} for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert {
        "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        "Effect": "Allow",
        "Resource": SECRET_ARN,
    } in statements
    assert {
        "Action": ["kms:Decrypt"],
        "Effect": "Allow",
        "Resource": KEY_ARN,
        "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}},
    } in statements
    assert len(statements) == 2


# --- the DaemonSets' room on the nodes --------------------------------------------------------------------------------

SECRETS_STORE_CHARTS = (SECRETS_STORE_CSI_DRIVER.chart, SECRETS_STORE_PROVIDER_AWS.chart)


def test_the_secrets_store_runs_on_every_system_node_and_no_gpu_node(capacity_block: Synthesized) -> None:
    pods = chart_pods(capacity_block)
    system = [node for node, spec in eks_nodes(capacity_block).values() if spec is None]
    gpu = [node for node, _ in gpu_nodes(capacity_block).values()]
    assert system and gpu
    for chart in SECRETS_STORE_CHARTS:
        assert all(can_place(pods[chart], node) for node in system), chart
        assert not any(can_place(pods[chart], node) for node in gpu), chart


def test_the_config_check_counts_the_secrets_store_daemonsets(capacity_block: Synthesized) -> None:
    """infra/gpu_capacity/node_capacity.py's requests are the charts' own, and the system node the config check sizes
    the routers on is the one the rehearsal builds (after every DaemonSet that lands there)."""
    pods = chart_pods(capacity_block)
    for chart in SECRETS_STORE_CHARTS:
        wanted = pod_requests(pods[chart])
        counted = node_capacity.SECRETS_STORE_DAEMONSETS[chart]
        assert (wanted["cpu"], wanted["memory"] // 2**20) == (counted.cpu_m, counted.memory_mib), chart
    budget = node_capacity.system_node_budget(capacity_block.deployment)
    system = [n for n in rehearsal_cluster(capacity_block).nodes if n.labels.get(POOL_LABEL) == "system"]
    assert system
    for node in system:
        assert (node.capacity["cpu"], node.capacity["memory"] // 2**20) == (budget.cpu_m, budget.memory_mib)
