"""The existing-cluster check's handler (infra/cluster/existing_check/handler.py) through a real boto3 EKS client:
against moto's server where moto models the call (DescribeCluster of a cluster that is not there), and against
recorded EKS answers for what moto 5.2.5 does not model (accessConfig, ListAddons, DescribeAddon). The properties
are those the shipped example synthesizes."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from infra.cluster.existing_check import handler
from infra.cluster.existing_check.check import check_properties
from infra.config import parse_deployment
from tests.infra.operations.local_servers import MotoServer, RecordedAws, serving
from tests.support.synthesis import load_yaml

WANT = check_properties(parse_deployment(load_yaml("existing-cluster.yaml")))
CLUSTER = "GET /clusters/platform-prod"
ADDONS = "GET /clusters/platform-prod/addons"
VPC_CNI = "GET /clusters/platform-prod/addons/vpc-cni"
EVENT = {"StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResponseURL": "https://example.invalid/"}


def recorded(**change: Any) -> RecordedAws:
    """The recorded healthy cluster with parts of its answers replaced: cluster=..., addons=..., vpc_cni=... (dicts
    merged into the answer's object)."""
    aws = RecordedAws.load("eks-existing-cluster.json")
    routes = copy.deepcopy(aws.routes)
    for key, route, field in (("cluster", CLUSTER, "cluster"), ("vpc_cni", VPC_CNI, "addon")):
        if key in change:
            routes[route][0]["body"][field].update(change[key])
    if "addons" in change:
        routes[ADDONS][0]["body"]["addons"] = change["addons"]
    return RecordedAws(routes=routes)


def problems(aws: RecordedAws, want: dict[str, Any] = WANT) -> list[str]:
    with serving(aws) as url:
        eks = boto3.client(
            "eks",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIATESTPDSTACK00001",
            aws_secret_access_key="testing",
        )
        return handler.cluster_problems(eks, json.loads(json.dumps(want)))


def test_the_recorded_cluster_has_everything() -> None:
    aws = recorded()
    assert problems(aws) == []
    assert aws.calls == [CLUSTER, ADDONS, VPC_CNI]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"cluster": {"version": "1.34"}}, "the cluster runs 1.34, not 1.35"),
        ({"cluster": {"status": "UPDATING"}}, "the cluster is UPDATING, not ACTIVE"),
        ({"cluster": {"accessConfig": {"authenticationMode": "CONFIG_MAP"}}}, "authentication mode is CONFIG_MAP"),
        ({"cluster": {"accessConfig": {}}}, "authentication mode is CONFIG_MAP"),  # EKS's default when unset
        (
            {"cluster": {"resourcesVpcConfig": {"vpcId": "vpc-0fffffffffffffff0", "clusterSecurityGroupId": "sg-0"}}},
            "vpcId is vpc-0fffffffffffffff0, the file says network.existing.vpc_id vpc-0123456789abcdef0",
        ),
        (
            {
                "cluster": {
                    "resourcesVpcConfig": {
                        "vpcId": "vpc-0123456789abcdef0",
                        "clusterSecurityGroupId": "sg-0123456789abcdef0",
                        "endpointPrivateAccess": False,
                    }
                }
            },
            "the API endpoint has no private access",
        ),
        ({"addons": ["vpc-cni"]}, "the eks-pod-identity-agent add-on is missing"),
        ({"addons": ["eks-pod-identity-agent"]}, "vpc-cni is not an EKS add-on"),
        (
            {"vpc_cni": {"addonVersion": "v1.18.4-eksbuild.1"}},
            "vpc-cni is v1.18.4-eksbuild.1; the GPU nodes need 1.18.5",
        ),
        ({"vpc_cni": {"configurationValues": ""}}, "vpc-cni does not enforce NetworkPolicies"),
        ({"vpc_cni": {"configurationValues": "enableNetworkPolicy: 'false'"}}, "does not enforce NetworkPolicies"),
    ],
)
def test_each_missing_thing_is_named(change: dict[str, Any], named: str) -> None:
    found = problems(recorded(**change))
    assert any(named in p for p in found), found


def test_every_missing_thing_is_named_at_once() -> None:
    found = problems(
        recorded(
            cluster={"version": "1.34", "accessConfig": {"authenticationMode": "CONFIG_MAP"}},
            vpc_cni={"addonVersion": "v1.17.1-eksbuild.1", "configurationValues": "{}"},
        )
    )
    assert len(found) == 4, found


def test_network_policies_in_yaml_configuration_values_count() -> None:
    assert problems(recorded(vpc_cni={"configurationValues": 'enableNetworkPolicy: "true"\n'})) == []


def test_a_kubectl_role_mapped_in_aws_auth_accepts_config_map() -> None:
    data = load_yaml("existing-cluster.yaml")
    data["cluster"]["existing"]["authentication_mode"] = "CONFIG_MAP"
    data["cluster"]["existing"]["kubectl_role_arn"] = "arn:aws:iam::123456789012:role/platform-kubectl"
    data["observability"] = {"enabled": False}
    data["autoscaling"] = {"enabled": False}
    data["network"]["existing"]["collector_subnets"] = []
    want = check_properties(parse_deployment(data))
    assert problems(recorded(cluster={"accessConfig": {"authenticationMode": "CONFIG_MAP"}}), want) == []


def test_a_cluster_that_is_not_there_is_named_by_moto(aws_env: MotoServer) -> None:
    eks = boto3.client("eks", region_name="us-east-1")
    (problem,) = handler.cluster_problems(eks, WANT)
    assert problem == "no EKS cluster platform-prod in this account and region"


def test_a_failed_check_fails_the_resource_and_delete_always_succeeds(aws_env: MotoServer) -> None:
    eks = boto3.client("eks", region_name="us-east-1")
    event = {**EVENT, "RequestType": "Create", "ResourceProperties": WANT}
    answer = handler.outcome(event, eks)
    assert answer["Status"] == "FAILED" and "no EKS cluster platform-prod" in answer["Reason"]
    assert handler.outcome({**event, "RequestType": "Delete"}, eks)["Status"] == "SUCCESS"


def test_moto_lacks_the_add_on_calls_and_the_check_says_it_could_not_run(aws_env: MotoServer) -> None:
    """Why the add-on answers are recorded: moto 5.2.5 has a cluster but no ListAddons. The check then fails the
    resource with the error rather than passing or hanging."""
    eks = boto3.client("eks", region_name="us-east-1")
    eks.create_cluster(
        name="platform-prod",
        version="1.35",
        roleArn="arn:aws:iam::123456789012:role/platform-prod-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-0aaaaaaaaaaaaaaa1"]},
    )
    answer = handler.outcome({**EVENT, "RequestType": "Update", "ResourceProperties": WANT}, eks)
    assert answer["Status"] == "FAILED" and "the existing-cluster check could not run" in answer["Reason"]
