"""pdstack's parts as constructs: a live deployment keeps its resources across the move from stacks to constructs,
and the parts are nag-clean wherever a user places them.

A changed logical id makes CloudFormation create a new resource and delete the old one: for the VPC, the EKS cluster,
a KMS key or the metrics workspace that is an outage or data loss on the next `cdk deploy` of an existing
deployment. The ids below were read from the templates pdstack 29983ff synthesized (each stack then built its
resources itself); every part now lives in a construct the stack holds under the id "Default", which CDK leaves out
of logical ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from infra.compliance.nag import register_checks
from infra.config import parse_deployment
from infra.image.stack import ImageProps, ServingImage
from infra.network.stack import Network, NetworkProps
from tests.support.synthesis import Synthesized, load_yaml

# (stack part, resource type) -> logical ids of the deployments/default.yaml stacks at 29983ff
STATEFUL_IDS = {
    ("network", "AWS::EC2::VPC"): {"Vpc8378EB38"},
    ("network", "AWS::KMS::Key"): {"FlowLogKeyA9968EC3"},
    ("network", "AWS::EC2::Subnet"): {
        "VpccollectorSubnet1SubnetE5690B26",
        "VpccollectorSubnet2SubnetBA927C59",
        "VpcprivateSubnet1SubnetCEAD3716",
        "VpcprivateSubnet2Subnet2DE7549C",
        "VpcpublicSubnet1Subnet2BB74ED7",
        "VpcpublicSubnet2SubnetE34B022A",
    },
    ("image", "AWS::ECR::Repository"): {"Repository22E53BBD"},
    ("image", "AWS::KMS::Key"): {"ImageKey1FEC5C7A"},
    ("cluster", "AWS::EKS::Cluster"): {"ClusterEB0386A7"},
    ("cluster", "AWS::EKS::Nodegroup"): {"ClusterNodegroupSystemNodes9C3907F1"},
    ("cluster", "AWS::KMS::Key"): {"SecretsKey317DCF94"},
    ("gpu_nodes", "AWS::EKS::Nodegroup"): {"Gpup5Nodes98A668C7"},
    ("observability", "AWS::APS::Workspace"): {"MetricsWorkspace510C503F"},
    ("observability", "AWS::APS::Scraper"): {"Collector"},
    ("workloads", "Custom::AWSCDK-EKS-KubernetesResource"): {"Serving7A42E1DA", "AutoscalingScaledObjects18644EF4"},
}


def _ids(template: cdk.assertions.Template, resource_type: str) -> set[str]:
    return set(template.find_resources(resource_type))


@pytest.mark.parametrize(("part", "resource_type"), sorted(STATEFUL_IDS))
def test_a_live_deployments_stateful_resources_keep_their_logical_ids(
    default: Synthesized, part: str, resource_type: str
) -> None:
    template = getattr(default, part)
    assert _ids(template, resource_type) == STATEFUL_IDS[(part, resource_type)]


def test_the_parts_are_nag_clean_in_a_users_own_stack(tmp_path: Path) -> None:
    """The acknowledgements follow the constructs: a user's stack holding the network and the image under ids of
    its own synthesizes with cdk-nag on and no unacknowledged finding (app.synth raises otherwise)."""
    deployment = parse_deployment(load_yaml("default.yaml"), "default")
    app = cdk.App(outdir=str(tmp_path))
    platform = cdk.Stack(app, "TeamPlatform")
    Network(platform, "InferenceNetwork", props=NetworkProps(config=deployment.network, metrics_collector=True))
    ServingImage(platform, "InferenceImage", props=ImageProps(config=deployment.image, deployment_name="team"))
    register_checks(app)
    app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    assert plugin["suppressedViolations"], "the acknowledgements were applied to the user's constructs"
