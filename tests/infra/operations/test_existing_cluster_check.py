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

WANT: dict[str, Any] = check_properties(parse_deployment(load_yaml("existing-cluster.yaml")))
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


def recorded_eks(url: str) -> Any:
    """An EKS client of the recorded answers served at ``url``."""
    return boto3.client(
        "eks",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTPDSTACK00001",
        aws_secret_access_key="testing",
    )


def problems(aws: RecordedAws, want: dict[str, Any] = WANT) -> list[str]:
    with serving(aws) as url:
        return handler.cluster_problems(recorded_eks(url), json.loads(json.dumps(want)))


def test_the_recorded_cluster_has_everything() -> None:
    aws = recorded()
    assert problems(aws) == []
    assert aws.calls == [CLUSTER, ADDONS, VPC_CNI]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"cluster": {"version": "1.34"}}, "the cluster runs 1.34, not cluster.kubernetes_version 1.35"),
        ({"cluster": {"status": "UPDATING"}}, "the cluster is UPDATING, not ACTIVE"),
        (
            {"cluster": {"accessConfig": {"authenticationMode": "CONFIG_MAP"}}},
            "authentication mode is CONFIG_MAP (cluster.existing.authentication_mode)",
        ),
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
            (
                "vpc-cni is v1.18.4-eksbuild.1, the file says cluster.existing.vpc_cni_version v1.20.4-eksbuild.1; "
                "the GPU nodes need 1.18.5"
            ),
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
    assert problem == "no EKS cluster platform-prod (cluster.name) in this account and region"


def test_a_failed_check_fails_the_resource_and_delete_always_succeeds(aws_env: MotoServer) -> None:
    eks, ec2 = (boto3.client(service, region_name="us-east-1") for service in ("eks", "ec2"))
    event = {**EVENT, "RequestType": "Create", "ResourceProperties": WANT}
    answer = handler.outcome(event, eks, ec2)
    assert answer["Status"] == "FAILED" and "no EKS cluster platform-prod" in answer["Reason"]
    assert (
        "network.existing.private_subnets[0] (gpu_subnet_id) subnet-0aaaaaaaaaaaaaaa1 is not a subnet"
        in (answer["Reason"])
    )
    assert handler.outcome({**event, "RequestType": "Delete"}, eks, ec2)["Status"] == "SUCCESS"


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
    ec2 = boto3.client("ec2", region_name="us-east-1")
    answer = handler.outcome({**EVENT, "RequestType": "Update", "ResourceProperties": WANT}, eks, ec2)
    assert answer["Status"] == "FAILED" and "the existing-cluster check could not run" in answer["Reason"]


def _moto_network(ec2: Any) -> tuple[str, dict[str, str]]:
    """The example's VPC and its four subnets, created in moto (which picks the ids): the VPC id and id by CIDR."""
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ids = {}
    for cidr, zone in (
        ("10.20.0.0/19", "us-east-1a"),
        ("10.20.32.0/19", "us-east-1b"),
        ("10.20.255.0/28", "us-east-1a"),
        ("10.20.255.16/28", "us-east-1b"),
    ):
        ids[cidr] = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
    return vpc, ids


def _want_subnets(vpc: str, ids: dict[str, str]) -> dict[str, Any]:
    """The example's check properties with moto's ids in place of the file's placeholders."""
    by_placeholder = {label_cidr[1]: ids[label_cidr[1]] for label_cidr in WANT["Subnets"].values()}
    subnets = {by_placeholder[cidr]: [label, cidr] for label, cidr in WANT["Subnets"].values()}
    return {**WANT, "VpcId": vpc, "Subnets": subnets}


def test_the_declared_subnets_in_the_declared_vpc_pass(aws_env: MotoServer) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert sorted(label for label, _ in WANT["Subnets"].values()) == [
        "network.existing.collector_subnets[0]",
        "network.existing.collector_subnets[1]",
        "network.existing.private_subnets[0] (gpu_subnet_id)",
        "network.existing.private_subnets[1]",
    ]
    assert handler.subnet_problems(ec2, _want_subnets(*_moto_network(ec2))) == []


def test_a_subnet_of_another_vpc_is_named_with_its_field(aws_env: MotoServer) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc, ids = _moto_network(ec2)
    other = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    stray = ec2.create_subnet(VpcId=other, CidrBlock="10.30.255.0/28", AvailabilityZone="us-east-1b")["Subnet"]
    want = _want_subnets(vpc, ids)
    del want["Subnets"][ids["10.20.255.16/28"]]
    want["Subnets"][stray["SubnetId"]] = ["network.existing.collector_subnets[1]", "10.30.255.0/28"]
    assert handler.subnet_problems(ec2, want) == [
        f"network.existing.collector_subnets[1] {stray['SubnetId']} is in {other}, not network.existing.vpc_id {vpc}"
    ]


def test_a_missing_subnet_and_a_wrong_cidr_are_named(aws_env: MotoServer) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc, ids = _moto_network(ec2)
    want = _want_subnets(vpc, ids)
    want["Subnets"][ids["10.20.32.0/19"]] = ["network.existing.private_subnets[1]", "10.20.64.0/19"]
    want["Subnets"]["subnet-0eeeeeeeeeeeeeee5"] = ["network.existing.collector_subnets[2]", "10.20.255.32/28"]
    assert sorted(handler.subnet_problems(ec2, want)) == sorted(
        [
            f"network.existing.private_subnets[1] {ids['10.20.32.0/19']} is 10.20.32.0/19, the file says 10.20.64.0/19",
            "network.existing.collector_subnets[2] subnet-0eeeeeeeeeeeeeee5 is not a subnet in this account and region",
        ]
    )


ASSOCIATIONS = "GET /clusters/platform-prod/pod-identity-associations"


def _associations(*taken: tuple[str, str]) -> RecordedAws:
    """EKS ListPodIdentityAssociations answering ``taken`` (namespace, service account) pairs (EKS API reference,
    PodIdentityAssociationSummary)."""
    summaries = [
        {
            "clusterName": "platform-prod",
            "namespace": namespace,
            "serviceAccount": account,
            "associationArn": f"arn:aws:eks:us-east-1:123456789012:podidentityassociation/platform-prod/a-{i}",
            "associationId": f"a-{i}",
        }
        for i, (namespace, account) in enumerate(taken)
    ]
    return RecordedAws(routes={ASSOCIATIONS: [{"status": 200, "body": {"associations": summaries}}]})


def claimed(aws: RecordedAws) -> list[str]:
    with serving(aws) as url:
        return handler.claimed_problems(recorded_eks(url), json.loads(json.dumps(WANT)))


def test_the_first_deploy_claims_the_serving_namespace() -> None:
    """Review finding 5: a second pdstack deployment on the cluster (or an app in its namespace) is refused on the
    first deploy, before anything is created, instead of colliding on the Pod Identity associations later."""
    assert WANT["Claimed"] == [["pdstack", "", "the serving namespace"]]
    free = _associations()
    assert claimed(free) == []
    assert free.calls == [ASSOCIATIONS]
    (problem,) = claimed(_associations(("pdstack", "pdstack-router")))
    assert problem.startswith(
        "the serving namespace: namespace pdstack already has Pod Identity associations (pdstack-router): another "
        "pdstack deployment or app uses it"
    )


def test_only_the_first_deploy_looks_for_claims() -> None:
    """An update finds this deployment's own associations: only Create asks (the recorded cluster has no
    ListPodIdentityAssociations answer, so an Update that asked would fail)."""
    aws = recorded()
    with serving(aws) as url:
        clients = [
            boto3.client(
                service,
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="AKIATESTPDSTACK00001",
                aws_secret_access_key="testing",
            )
            for service in ("eks", "ec2")
        ]
        want = {**WANT, "Subnets": {}}
        answer = handler.outcome({**EVENT, "RequestType": "Update", "ResourceProperties": want}, *clients)
    assert answer["Status"] == "SUCCESS", answer
    assert ASSOCIATIONS not in aws.calls
