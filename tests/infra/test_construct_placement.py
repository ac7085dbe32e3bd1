"""pdstack's parts as constructs: a live deployment keeps its resources across the move from stacks to constructs,
and the parts are nag-clean wherever a user places them.

A changed logical id makes CloudFormation create a new resource and delete the old one: for the VPC, the EKS cluster,
a KMS key or the metrics workspace that is an outage or data loss on the next `cdk deploy` of an existing
deployment. The ids below were read from the templates pdstack 29983ff synthesized for every deployment it shipped
(each stack then built its resources itself); every part now lives in a construct the stack holds under the id
"Default", which CDK leaves out of logical ids.
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
from tests.support.synthesis import SHIPPED, Synthesized, load_yaml

# The stateful resources' logical ids, (stack part, resource type) -> ids, read from `cdk synth -c
# deployment=deployments/<file>` at 29983ff: the network, its subnets and flow-log key, the image repository and
# key, the EKS cluster, its system node group and secrets key, the GPU node groups, the HyperPod cluster and its
# lifecycle buckets, the metrics workspace and scraper, the workloads' Kubernetes manifests and every Pod Identity
# association (a second association for the same service account fails to create). One table per deployment shipped
# at 29983ff; _EVERY holds the entries all five had alike.
_EVERY = {
    ("network", "AWS::EC2::VPC"): {"Vpc8378EB38"},
    ("network", "AWS::KMS::Key"): {"FlowLogKeyA9968EC3"},
    ("image", "AWS::ECR::Repository"): {"Repository22E53BBD"},
    ("image", "AWS::KMS::Key"): {"ImageKey1FEC5C7A"},
    ("cluster", "AWS::EKS::Cluster"): {"ClusterEB0386A7"},
    ("cluster", "AWS::EKS::Nodegroup"): {"ClusterNodegroupSystemNodes9C3907F1"},
    ("cluster", "AWS::KMS::Key"): {"SecretsKey317DCF94"},
    ("observability", "AWS::APS::Workspace"): {"MetricsWorkspace510C503F"},
    ("observability", "AWS::APS::Scraper"): {"Collector"},
    ("workloads", "Custom::AWSCDK-EKS-KubernetesResource"): {"Serving7A42E1DA", "AutoscalingScaledObjects18644EF4"},
}
_TWO_ZONE_SUBNETS = {
    ("network", "AWS::EC2::Subnet"): {
        "VpccollectorSubnet1SubnetE5690B26",
        "VpccollectorSubnet2SubnetBA927C59",
        "VpcprivateSubnet1SubnetCEAD3716",
        "VpcprivateSubnet2Subnet2DE7549C",
        "VpcpublicSubnet1Subnet2BB74ED7",
        "VpcpublicSubnet2SubnetE34B022A",
    }
}
_MODEL_READERS = {"ModelReaderpdstackdecode", "ModelReaderpdstackprefill", "ModelReaderpdstackrouter"}
_KEDA = "AutoscalingKedaOperatorIdentity45E0FA2A"
_NODE_GROUP = {
    ("gpu_nodes", "AWS::EKS::Nodegroup"): {"Gpup5Nodes98A668C7"},
    ("gpu_nodes", "AWS::EKS::PodIdentityAssociation"): {"NodeAutoscalerIdentity6648B3FF"},
}
_ONE_MODEL_WORKLOADS = {("workloads", "AWS::EKS::PodIdentityAssociation"): {_KEDA, *_MODEL_READERS}}
PINNED_AT_29983FF: dict[str, dict[tuple[str, str], set[str]]] = {
    "default": {**_EVERY, **_TWO_ZONE_SUBNETS, **_NODE_GROUP, **_ONE_MODEL_WORKLOADS},
    "wide_ep": {**_EVERY, **_TWO_ZONE_SUBNETS, **_NODE_GROUP, **_ONE_MODEL_WORKLOADS},
    "kv_tiers": {**_EVERY, **_TWO_ZONE_SUBNETS, **_NODE_GROUP, **_ONE_MODEL_WORKLOADS},
    "capacity_block": {
        **_EVERY,
        ("network", "AWS::EC2::Subnet"): {
            *_TWO_ZONE_SUBNETS[("network", "AWS::EC2::Subnet")],
            "VpccollectorSubnet3SubnetA8DF4219",
            "VpcprivateSubnet3SubnetA5AC68D9",
            "VpcpublicSubnet3SubnetDFEF064A",
        },
        ("gpu_nodes", "AWS::EKS::Nodegroup"): {"Gpup5enblockNodes6B8898FC"},
        ("gpu_nodes", "AWS::EKS::PodIdentityAssociation"): {"NodeAutoscalerIdentity6648B3FF"},
        ("workloads", "AWS::EKS::PodIdentityAssociation"): {
            _KEDA,
            "LoadBalancerControllerPodIdentity8D0522BF",
            "ModelReaderpdstackdecode",
            "ModelReaderpdstackprefill",
            "RouterApiKeysApiKeysReaderIdentityE5D118AA",
        },
    },
    "hyperpod": {
        **_EVERY,
        **_TWO_ZONE_SUBNETS,
        **_ONE_MODEL_WORKLOADS,
        ("hyperpod", "AWS::SageMaker::Cluster"): {"Cluster"},
        ("hyperpod", "AWS::S3::Bucket"): {"LifecycleBucket0668F9AE", "LifecycleAccessLogs5B0EFAB3"},
        ("hyperpod", "Custom::AWSCDK-EKS-KubernetesResource"): {"ResiliencyDependencies3186F848"},
    },
}
# two-models.yaml and existing-cluster.yaml shipped after 29983ff: no live deployment of them predates this test, so
# nothing of theirs is pinned (yet).
NOT_PINNED = {"two_models", "existing_cluster"}
PINS = sorted((name, *key) for name, table in PINNED_AT_29983FF.items() for key in table)


def _ids(template: cdk.assertions.Template, resource_type: str) -> set[str]:
    return set(template.find_resources(resource_type))


@pytest.mark.parametrize(("deployment", "part", "resource_type"), PINS)
def test_a_live_deployments_stateful_resources_keep_their_logical_ids(
    request: pytest.FixtureRequest, deployment: str, part: str, resource_type: str
) -> None:
    synthesized: Synthesized = request.getfixturevalue(deployment)
    template = getattr(synthesized, part)
    assert _ids(template, resource_type) == PINNED_AT_29983FF[deployment][(part, resource_type)]


def test_every_shipped_deployment_is_pinned_or_said_not_to_be() -> None:
    assert sorted([*PINNED_AT_29983FF, *NOT_PINNED]) == sorted(SHIPPED)


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
