"""The router's internal NLB through the AWS Load Balancer Controller, as synthesized: the chart pinned and given
the cluster's name, VPC and region, on the system nodes, with a Pod Identity role that can do what the router's
Service asks of it, and applied before the Service (capacity-block.yaml turns the load balancer on)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.workload_names import ROUTER
from tests.support.synthesis import Synthesized


def _charts(synth: Synthesized) -> dict[str, Mapping[str, Any]]:
    return {
        k: c
        for k, c in synth.workloads.find_resources("Custom::AWSCDK-EKS-HelmChart").items()
        if c["Properties"]["Chart"] == "aws-load-balancer-controller"
    }


def _id(synth: Synthesized, construct: Any) -> str:
    return synth.stacks.workloads.resolve(construct.node.default_child.logical_id)


def test_no_controller_without_the_load_balancer(default: Synthesized) -> None:
    assert not default.deployment.workloads.router.internal_load_balancer
    assert not _charts(default)
    assert not [o for o in default.stacks.workloads.objects if o["metadata"]["name"] == f"{ROUTER}-nlb"]


def test_the_chart_is_pinned_and_knows_its_cluster(capacity_block: Synthesized) -> None:
    ((_, chart),) = _charts(capacity_block).items()
    props = chart["Properties"]
    assert props["Repository"] == "https://aws.github.io/eks-charts" and props["Version"] == "3.5.0"
    assert props["Namespace"] == "kube-system"
    values = json.loads(json.dumps(props["Values"]))
    text = json.dumps(values)
    # clusterName, vpcId and region are CloudFormation references (the cluster's name, the VPC, the stack's region)
    for key in ("clusterName", "vpcId", "region"):
        assert f'\\"{key}\\":' in text, key
    assert '{"Ref":"AWS::Region"}' in text.replace(" ", "")
    assert '\\"enableServiceMutatorWebhook\\":false' in text.replace(" ", "")


def test_the_controller_role_can_build_a_tls_nlb_for_pod_ips(capacity_block: Synthesized) -> None:
    synth = capacity_block
    controller = synth.stacks.workloads.load_balancer_controller
    assert controller is not None
    role = {"Fn::GetAtt": [_id(synth, controller.role), "Arn"]}
    (association,) = [
        a["Properties"]
        for a in synth.workloads.find_resources("AWS::EKS::PodIdentityAssociation").values()
        if a["Properties"]["RoleArn"] == role
    ]
    assert (association["Namespace"], association["ServiceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    (role_resource,) = [
        r for k, r in synth.workloads.find_resources("AWS::IAM::Role").items() if k == _id(synth, controller.role)
    ]
    assert "pods.eks.amazonaws.com" in json.dumps(role_resource["Properties"]["AssumeRolePolicyDocument"])
    granted = {
        a
        for p in role_resource["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if s["Effect"] == "Allow"
    }
    # an NLB with a TLS listener (ACM certificate), IP targets with attributes, and a security group for the sources
    assert {
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "acm:DescribeCertificate",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
    } <= granted


def test_the_service_waits_for_the_controller(capacity_block: Synthesized) -> None:
    """The NLB Service is applied after the controller runs (and its association exists before its pods)."""
    workloads = capacity_block.stacks.workloads
    controller = workloads.load_balancer_controller
    assert controller is not None
    assert controller.chart in workloads.manifest.node.dependencies
    assert controller.association in controller.chart.node.dependencies
    assert [o for o in workloads.objects if o["metadata"]["name"] == f"{ROUTER}-nlb"]
