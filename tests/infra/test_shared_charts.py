"""A serving unit placed by a team's own app (review finding 2): the Load Balancer Controller and the Secrets Store
charts are constructs of their own (pdstack exports them), and a unit that needs one without being given it is
refused at synthesis, naming the construct to add. pdstack's WorkloadsStack passes them (every shipped deployment
synthesizes; deployments/capacity-block.yaml uses both)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks

import pdstack
from infra.config import parse_deployment
from infra.workloads.shared_charts import missing_shared_charts
from infra.workloads.stack import ServingUnitProps, ServingUnitWorkloads
from tests.support.synthesis import Synthesized, load_yaml

CONTROLLER = "add LoadBalancerController(scope, id, props=LoadBalancerControllerProps("
SECRETS_STORE = "add SecretsStoreCharts(scope, id, props=SecretsStoreProps("


def _unit_view(**addons: str) -> pdstack.Deployment:
    """capacity-block.yaml's unit (internal load balancer and API keys); with ``addons``, the same router on the
    existing cluster of existing-cluster.yaml, whose cluster.addons may say 'platform'."""
    data = load_yaml("capacity-block.yaml")
    if addons:
        router = data["workloads"]["router"]
        data = load_yaml("existing-cluster.yaml")
        data["workloads"]["router"].update(
            {k: router[k] for k in ("internal_load_balancer", "certificate_arn", "api_keys_secret")}
        )
        data["cluster"]["addons"].update(addons)
    deployment = parse_deployment(data)
    (unit,) = deployment.units
    return deployment.for_unit(unit)


def test_pdstack_exports_both_constructs_with_their_props() -> None:
    for name in ("LoadBalancerController", "LoadBalancerControllerProps", "SecretsStoreCharts", "SecretsStoreProps"):
        assert name in pdstack.__all__ and hasattr(pdstack, name), name


def test_a_unit_without_the_charts_it_needs_is_refused_naming_them() -> None:
    stack = cdk.Stack(cdk.App(), "TeamServing")
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-2a"], private_subnet_ids=["s-1"]
    )
    cluster = eks.Cluster.from_cluster_attributes(stack, "Cluster", cluster_name="team", vpc=vpc)
    props = ServingUnitProps(
        deployment=_unit_view(),
        cluster=cluster,
        image_uri="123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack:x",
        metrics_collector_cidrs=[],
        prerequisites=[],
    )
    with pytest.raises(ValueError) as refused:
        ServingUnitWorkloads(stack, "Llama", props=props)
    assert CONTROLLER in str(refused.value) and SECRETS_STORE in str(refused.value)


def test_what_the_platform_runs_is_not_asked_for() -> None:
    assert [m[:60] for m in missing_shared_charts(_unit_view(), [])] == [
        "workloads.router.internal_load_balancer needs the AWS Load B",
        "workloads.router.api_keys_secret needs the Secrets Store CSI",
    ]
    view = _unit_view(load_balancer_controller="platform", secrets_store_csi_driver="platform")
    assert missing_shared_charts(view, []) == []


def test_pdstack_s_own_workloads_stack_gives_its_units_both(capacity_block: Synthesized) -> None:
    """The positive side: pdstack's WorkloadsStack builds the capacity-block unit, which uses both, and passes it the
    controller's chart and both Secrets Store charts."""
    workloads = capacity_block.stacks.workloads
    assert workloads.load_balancer_controller is not None and workloads.secrets_store is not None
    (unit,) = workloads.units
    depends = set(unit.manifest.node.dependencies)
    assert {workloads.load_balancer_controller.chart, *workloads.secrets_store.charts} <= depends
