"""The metrics pipeline as synthesized from the default deployment: an encrypted workspace holding the committed
alert rules, the managed collector in its own subnets with its own security group with the scrape configuration of
targets.py, and the workspace exposed to other stacks (attributes and outputs). Property names are held against
cfn-lint's bundled CloudFormation schemas."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
import yaml
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from infra.config import parse_deployment
from infra.observability.generate import RULES_FILE
from infra.observability.stack import QUERY_ACTIONS, MetricsWorkspace
from infra.observability.targets import scrape_config
from tests.support.synthesis import SynthesisCache, Synthesized, load_yaml


def only(synth: Synthesized, kind: str) -> Mapping[str, Any]:
    assert synth.observability is not None
    (resource,) = synth.observability.find_resources(kind).values()
    return resource


def test_workspace_uses_the_aws_owned_key_by_default_and_keeps_the_configured_retention(default: Synthesized) -> None:
    """A customer managed key may keep the AWS managed collector from writing (issue 19, defect 7): off by default."""
    workspace = only(default, "AWS::APS::Workspace")["Properties"]
    assert "KmsKeyArn" not in workspace
    default.observability.resource_count_is("AWS::KMS::Key", 0)
    assert workspace["WorkspaceConfiguration"] == {"RetentionPeriodInDays": 150}


def test_a_customer_managed_key_is_an_option_rotated_and_removed_with_the_stack() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    app = cdk.App()
    stack = cdk.Stack(app, "Metrics")
    workspace = MetricsWorkspace(
        stack, "Workspace", alias="a", retention_days=30, rules="groups: []\n", customer_managed_key=True
    )
    template = Template.from_stack(stack)
    (key_id,) = template.find_resources(
        "AWS::KMS::Key", {"Properties": {"EnableKeyRotation": True}, "DeletionPolicy": "Delete"}
    )
    template.has_resource_properties("AWS::APS::Workspace", {"KmsKeyArn": {"Fn::GetAtt": [key_id, "Arn"]}})
    assert workspace.key is not None


def test_the_committed_rules_are_what_the_workspace_loads(default: Synthesized) -> None:
    rules = only(default, "AWS::APS::RuleGroupsNamespace")["Properties"]
    assert rules["Data"] == RULES_FILE.read_text()
    assert rules["Workspace"]["Fn::GetAtt"][1] == "Arn"


def test_collector_scrapes_the_cluster_from_its_subnets_into_the_workspace(default: Synthesized) -> None:
    scraper = only(default, "AWS::APS::Scraper")["Properties"]
    eks = scraper["Source"]["EksConfiguration"]
    cluster = default.stacks.cluster.stack_name
    assert len(eks["SubnetIds"]) == default.deployment.network.az_count >= 2  # the collector wants two zones
    assert all("collectorSubnet" in subnet["Fn::ImportValue"] for subnet in eks["SubnetIds"])
    assert (
        eks["ClusterArn"]["Fn::ImportValue"].startswith(f"{cluster}:") and "Arn" in eks["ClusterArn"]["Fn::ImportValue"]
    )
    (group,) = eks["SecurityGroupIds"]
    assert group["Fn::GetAtt"] == [
        default.stacks.observability.resolve(
            default.stacks.observability.collector_security_group.security_group.security_group_id
        )["Fn::GetAtt"][0],
        "GroupId",
    ]
    assert scraper["Destination"]["AmpConfiguration"]["WorkspaceArn"]["Fn::GetAtt"][1] == "Arn"
    blob = yaml.safe_load(base64.b64decode(scraper["ScrapeConfiguration"]["ConfigurationBlob"]))
    assert blob == scrape_config(default.deployment)


def test_the_collector_reaches_the_api_and_the_scraped_container_ports_on_the_cluster_group_only(
    default: Synthesized,
) -> None:
    """The ports are read from the rendered pods (the engines' container port named http, the router's named
    metrics) plus the API's 443."""
    deployments = [o for o in default.stacks.workloads.objects if o["kind"] == "Deployment"]
    scraped = {
        p["containerPort"]
        for o in deployments
        for c in o["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if p["name"] == ("metrics" if o["metadata"]["name"] == "pdstack-router" else "http")
    }
    assert default.deployment.serving.router.metrics_port in scraped
    wanted = {443, *scraped}
    cluster_group = "ClusterSecurityGroupId"
    (group,) = default.observability.find_resources("AWS::EC2::SecurityGroup").values()
    egress = group["Properties"]["SecurityGroupEgress"]
    assert {(r["FromPort"], r["ToPort"]) for r in egress} == {(p, p) for p in wanted}
    assert all(
        cluster_group in r["DestinationSecurityGroupId"]["Fn::ImportValue"] and r["IpProtocol"] == "tcp" for r in egress
    )
    ingress = default.observability.find_resources("AWS::EC2::SecurityGroupIngress").values()
    assert {(r["Properties"]["FromPort"], r["Properties"]["ToPort"]) for r in ingress} == {(p, p) for p in wanted}
    assert all(cluster_group in r["Properties"]["GroupId"]["Fn::ImportValue"] for r in ingress)
    assert "SecurityGroupIngress" not in group["Properties"]  # nothing reaches the collector's ENIs


def test_collector_access_comes_from_the_service_not_a_second_access_entry(default: Synthesized) -> None:
    """With API authentication the service creates the scraper's access entry; one of ours would collide."""
    (cluster,) = default.cluster.find_resources("AWS::EKS::Cluster").values()
    assert cluster["Properties"]["AccessConfig"]["AuthenticationMode"] in ("API", "API_AND_CONFIG_MAP")
    for template in (default.cluster, default.workloads, default.observability):
        for entry in template.find_resources("AWS::EKS::AccessEntry").values():
            assert "Scraper" not in str(entry["Properties"]["PrincipalArn"])
    assert default.observability.find_resources("AWS::IAM::Role") == {}  # the scraper's role is service-linked


def test_workspace_is_exposed_as_attributes_and_outputs(default: Synthesized) -> None:
    stack = default.stacks.observability
    assert stack is not None and stack.workspace.arn and stack.workspace.prometheus_endpoint
    outputs = default.observability.find_outputs("*")
    assert {"WorkspaceArn", "WorkspaceId", "PrometheusEndpoint", "QueryUrl", "ScraperRoleArn"} <= set(outputs)
    assert outputs["QueryUrl"]["Value"]["Fn::Join"][1][1] == "api/v1/query"


def test_grant_query_gives_read_actions_on_this_workspace_only(tmp_path) -> None:
    from aws_cdk import aws_iam as iam

    from infra.observability.stack import MetricsWorkspace

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    workspace = MetricsWorkspace(stack, "Metrics", alias="probe", retention_days=7, rules="groups: []\n")
    role = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com"))
    workspace.grant_query(role)
    template = cdk.assertions.Template.from_stack(stack)
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == sorted(QUERY_ACTIONS)
    assert statement["Resource"]["Fn::GetAtt"][1] == "Arn"


def test_property_names_exist_in_the_cloudformation_schemas(default: Synthesized) -> None:
    for kind in ("AWS::APS::Workspace", "AWS::APS::Scraper", "AWS::APS::RuleGroupsNamespace"):
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", kind).schema
        assert set(only(default, kind)["Properties"]) <= set(schema["properties"]), kind


def test_switched_off_there_is_no_observability_stack(synthesized: SynthesisCache) -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["observability"] = {"enabled": False}
    stacks = synthesized.get(parse_deployment(data)).stacks
    assert stacks.observability is None and all("observability" not in s.stack_name for s in stacks.all)
