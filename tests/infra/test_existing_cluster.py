"""What pdstack creates on an existing VPC and EKS cluster (deployments/existing-cluster.yaml), read from the
synthesized templates: only what is missing. No VPC, subnet, endpoint, cluster, managed add-on or system node group;
its kubectl handler with an access entry, the deploy-time check everything waits for, the GPU node group in the named
subnet, the add-ons the platform does not run, and the serving workloads on the platform's nodes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.cluster.existing_check.check import RESOURCE_TYPE
from infra.config import parse_deployment
from tests.support.rehearsal import chart_pods
from tests.support.synthesis import SynthesisCache, Synthesized, load_yaml

HELM = "Custom::AWSCDK-EKS-HelmChart"
ROLE = "arn:aws:iam::123456789012:role/platform-kubectl"


def templates(synth: Synthesized) -> list[Template]:
    return [t for t in (synth.network, synth.cluster, synth.gpu_nodes, synth.observability, synth.workloads) if t]


def charts(synth: Synthesized) -> set[str]:
    return {c["Properties"]["Chart"] for t in templates(synth) for c in t.find_resources(HELM).values()}


def variant(synthesized: SynthesisCache, **changes: Any) -> Synthesized:
    data = copy.deepcopy(load_yaml("existing-cluster.yaml"))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return synthesized.get(parse_deployment(data))


def test_no_vpc_cluster_managed_add_on_or_system_nodes_are_created(existing_cluster: Synthesized) -> None:
    assert existing_cluster.network is None and existing_cluster.stacks.network is None
    for template in templates(existing_cluster):
        for kind in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::VPCEndpoint", "AWS::EC2::FlowLog"):
            assert template.find_resources(kind) == {}, kind
        for kind in ("AWS::EKS::Cluster", "AWS::EKS::Addon", "Custom::AWSCDK-EKS-Cluster"):
            assert template.find_resources(kind) == {}, kind
    assert existing_cluster.cluster.find_resources("AWS::EKS::Nodegroup") == {}


def test_the_kubectl_handler_gets_cluster_admin_through_an_access_entry(existing_cluster: Synthesized) -> None:
    cluster = existing_cluster.cluster
    (entry,) = cluster.find_resources("AWS::EKS::AccessEntry").values()
    properties = entry["Properties"]
    assert properties["ClusterName"] == "platform-prod"
    (policy,) = properties["AccessPolicies"]
    assert policy["PolicyArn"]["Fn::Join"][1][-1].endswith(
        ":eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    )
    assert policy["AccessScope"] == {"Type": "cluster"}
    handler_role = properties["PrincipalArn"]["Fn::GetAtt"][0]
    handlers = [
        f["Properties"]
        for f in cluster.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Description") == "onEvent handler for EKS kubectl resource provider"
    ]
    (handler,) = handlers
    assert handler["Role"]["Fn::GetAtt"][0] == handler_role
    # in the private subnets, in the cluster security group: it reaches the private endpoint
    vpc = handler["VpcConfig"]
    assert vpc["SubnetIds"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    assert vpc["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    ((check_id, _),) = cluster.find_resources(RESOURCE_TYPE).items()
    assert check_id in entry["DependsOn"]


def test_everything_on_the_cluster_waits_for_the_check_and_the_access(existing_cluster: Synthesized) -> None:
    cluster = existing_cluster.cluster
    ((check_id, check),) = cluster.find_resources(RESOURCE_TYPE).items()
    assert check["Properties"]["ClusterName"] == "platform-prod"
    assert check["Properties"]["VpcCniMinimum"] == "1.18.5"
    # every subnet the file names, checked against the VPC at deploy time (ec2:DescribeSubnets, on * only)
    assert check["Properties"]["Subnets"] == {
        "subnet-0aaaaaaaaaaaaaaa1": ["network.existing.private_subnets[0] (gpu_subnet_id)", "10.20.0.0/19"],
        "subnet-0bbbbbbbbbbbbbbb2": ["network.existing.private_subnets[1]", "10.20.32.0/19"],
        "subnet-0ccccccccccccccc3": ["network.existing.collector_subnets[0]", "10.20.255.0/28"],
        "subnet-0ddddddddddddddd4": ["network.existing.collector_subnets[1]", "10.20.255.16/28"],
    }
    statements = [
        statement
        for policy in cluster.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    on_everything = [s["Action"] for s in statements if s["Resource"] == "*" and "ec2:DescribeSubnets" in str(s)]
    assert on_everything == ["ec2:DescribeSubnets"]
    (entry_id,) = cluster.find_resources("AWS::EKS::AccessEntry")
    in_stack = cluster.find_resources(HELM)
    assert in_stack
    for name, chart in in_stack.items():
        assert {check_id, entry_id} <= set(chart["DependsOn"]), name
    # the other stacks deploy after the cluster stack (their own charts, node groups and manifests)
    stacks = existing_cluster.stacks
    for dependent in (stacks.gpu_nodes, stacks.observability, stacks.workloads):
        assert dependent is not None and stacks.cluster in dependent.dependencies, dependent


def test_the_gpu_node_group_is_in_the_named_subnet_with_the_cluster_security_group(
    existing_cluster: Synthesized,
) -> None:
    gpu = existing_cluster.gpu_nodes
    assert gpu is not None
    (group,) = gpu.find_resources("AWS::EKS::Nodegroup").values()
    assert group["Properties"]["ClusterName"] == "platform-prod"
    assert group["Properties"]["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1"]
    (template,) = gpu.find_resources("AWS::EC2::LaunchTemplate").values()
    primary = template["Properties"]["LaunchTemplateData"]["NetworkInterfaces"][0]
    assert primary["Groups"][0] == "sg-0123456789abcdef0"
    (zone_check,) = gpu.find_resources("Custom::GpuZoneCheck").values()
    assert zone_check["Properties"]["SubnetId"] == "subnet-0aaaaaaaaaaaaaaa1"


def test_add_ons_the_platform_runs_are_not_installed(existing_cluster: Synthesized) -> None:
    installed = charts(existing_cluster)
    assert "lws" not in installed and "keda" not in installed  # cluster.addons: platform
    assert {"nvidia-device-plugin", "aws-efa-k8s-device-plugin", "cluster-autoscaler"} <= installed
    # the platform's KEDA still queries pdstack's workspace: its operator's Pod Identity and the ScaledObjects
    workloads = existing_cluster.stacks.workloads
    assert workloads.autoscaling is not None and workloads.autoscaling.chart is None
    (identity,) = [
        a["Properties"]
        for a in existing_cluster.workloads.find_resources("AWS::EKS::PodIdentityAssociation").values()
        if a["Properties"]["Namespace"] == "keda"
    ]
    assert identity["ServiceAccount"] == "keda-operator"


def test_the_routers_and_controllers_run_on_the_platform_nodes(existing_cluster: Synthesized) -> None:
    placement = {
        "nodeSelector": {"platform.example.com/pool": "general"},
        "tolerations": [
            {"key": "platform.example.com/dedicated", "operator": "Equal", "value": "general", "effect": "NoSchedule"}
        ],
    }
    (router,) = [
        o
        for o in existing_cluster.stacks.workloads.objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdstack-router"
    ]
    spec = router["spec"]["template"]["spec"]
    assert {k: spec[k] for k in placement} == placement
    controllers = chart_pods(existing_cluster)  # rendered from the chart values in the templates
    assert "cluster-autoscaler" in controllers
    pod = controllers["cluster-autoscaler"]
    assert pod["nodeSelector"] == placement["nodeSelector"] and pod["tolerations"] == placement["tolerations"]


def test_the_network_policies_admit_the_collector_by_the_declared_subnets(existing_cluster: Synthesized) -> None:
    assert existing_cluster.stacks.cluster.node.try_find_child("Network") is not None
    policies = [o for o in existing_cluster.stacks.workloads.objects if o["kind"] == "NetworkPolicy"]
    blocks = {
        peer["ipBlock"]["cidr"]
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "ipBlock" in peer
    }
    assert {"10.20.255.0/28", "10.20.255.16/28"} <= blocks
    (scraper,) = existing_cluster.observability.find_resources("AWS::APS::Scraper").values()
    assert scraper["Properties"]["Source"]["EksConfiguration"]["SubnetIds"] == [
        "subnet-0ccccccccccccccc3",
        "subnet-0ddddddddddddddd4",
    ]


def test_a_platform_kubectl_role_gets_no_access_entry(synthesized: SynthesisCache) -> None:
    synth = variant(synthesized, cluster__existing__kubectl_role_arn=ROLE)
    assert synth.cluster.find_resources("AWS::EKS::AccessEntry") == {}
    handler = next(
        f["Properties"]
        for f in synth.cluster.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Description") == "onEvent handler for EKS kubectl resource provider"
    )
    assert handler["Role"] == ROLE
    ((check_id, _),) = synth.cluster.find_resources(RESOURCE_TYPE).items()
    for chart in synth.cluster.find_resources(HELM).values():
        assert check_id in chart["DependsOn"]


def test_a_platform_cluster_autoscaler_leaves_the_groups_tagged(synthesized: SynthesisCache) -> None:
    data = copy.deepcopy(load_yaml("existing-cluster.yaml"))
    data["cluster"]["addons"]["node_autoscaler"] = "platform"
    data["gpu_node_groups"][0]["min_size"] = 1
    data["gpu_node_groups"][0]["max_size"] = 3
    synth = synthesized.get(parse_deployment(data))
    assert "cluster-autoscaler" not in charts(synth)
    autoscaler = synth.stacks.gpu_nodes.node_autoscaler
    assert autoscaler is not None and autoscaler.role is None and autoscaler.chart is None
    assert set(autoscaler.template_tags) == {"p5"}


@pytest.fixture(scope="module")
def own_cluster_in_existing_vpc(synthesized: SynthesisCache) -> Synthesized:
    """An existing VPC with a cluster pdstack creates in it."""
    data = copy.deepcopy(load_yaml("existing-cluster.yaml"))
    data["cluster"] = {"name": "pdstack-byo", "kubernetes_version": "1.35", "system_instance_type": "m7i.2xlarge"}
    return synthesized.get(parse_deployment(data))


def test_a_cluster_of_its_own_in_an_existing_vpc(own_cluster_in_existing_vpc: Synthesized) -> None:
    synth = own_cluster_in_existing_vpc
    assert synth.network is None
    (cluster,) = (
        synth.cluster.find_resources("Custom::AWSCDK-EKS-Cluster").values()
        or synth.cluster.find_resources("AWS::EKS::Cluster").values()
    )
    assert "subnet-0aaaaaaaaaaaaaaa1" in json.dumps(cluster["Properties"])
    (system,) = synth.cluster.find_resources("AWS::EKS::Nodegroup").values()
    assert system["Properties"]["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    assert {"lws", "keda"} <= charts(synth)
    assert synth.cluster.find_resources(RESOURCE_TYPE) == {}


def test_hyperpod_on_an_existing_cluster(synthesized: SynthesisCache) -> None:
    """HyperPod's GPU nodes join the existing cluster: its orchestrator names that cluster, in the GPU subnet, with
    the cluster security group; the HyperPod stack follows the cluster stack (the check runs first)."""
    data = copy.deepcopy(load_yaml("hyperpod.yaml"))
    existing = load_yaml("existing-cluster.yaml")
    data["name"] = "hp-byo"
    data["network"] = copy.deepcopy(existing["network"])
    data["cluster"] = copy.deepcopy(existing["cluster"])
    data["cluster"]["addons"] = {}
    synth = synthesized.get(parse_deployment(data))
    assert synth.network is None and synth.hyperpod is not None
    assert synth.cluster.find_resources("AWS::EKS::Nodegroup") == {}
    (check,) = synth.cluster.find_resources(RESOURCE_TYPE).values()
    assert check["Properties"]["VpcCniMinimum"] == "1.18.3"
    assert check["Properties"]["AuthenticationModes"] == ["API", "API_AND_CONFIG_MAP"]
    (cluster,) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").values()
    orchestrator = json.dumps(cluster["Properties"]["Orchestrator"])
    assert ":cluster/platform-prod" in orchestrator
    vpc = cluster["Properties"]["VpcConfig"]
    assert vpc["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1"] and "sg-0123456789abcdef0" in vpc["SecurityGroupIds"]
    assert synth.stacks.cluster in synth.stacks.hyperpod.dependencies
