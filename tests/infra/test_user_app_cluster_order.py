"""A team's app on an existing cluster (deployments/team_app_existing), built in-process from pdstack's constructs:
every resource that acts on the cluster comes after the deploy-time check of the cluster (Custom::ExistingClusterCheck),
as the README promises ("before anything else is created on the cluster"). In pdstack's own app the stacks order this;
in a user's app, where one stack holds the cluster and what goes on it, only the constructs' dependencies do."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
import pytest

from infra.cluster.existing_check.check import RESOURCE_TYPE as CHECK
from pdstack import ImageProps, ServingImage, ServingWorkloads, ServingWorkloadsProps, load_deployment
from tests.support.synthesis import DEPLOYMENTS

APP = DEPLOYMENTS / "team_app_existing"
# What acts on the cluster, by CloudFormation type: its Kubernetes objects and charts, Pod Identity associations,
# access entries, node groups that join it, and the managed collector that scrapes it.
ON_THE_CLUSTER = {
    "Custom::AWSCDK-EKS-KubernetesResource",
    "Custom::AWSCDK-EKS-HelmChart",
    "Custom::AWSCDK-EKS-KubernetesPatch",
    "AWS::EKS::PodIdentityAssociation",
    "AWS::EKS::AccessEntry",
    "AWS::EKS::Nodegroup",
    "AWS::APS::Scraper",
}


def user_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("team_app_existing_app", APP / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def references(value: Any) -> set[str]:
    """Logical ids a property value names with Ref or Fn::GetAtt."""
    if isinstance(value, dict):
        found = set()
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            else:
                found |= references(inner)
        return found
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def after(resources: dict[str, Any], start: str) -> set[str]:
    """Every logical id that ``start`` waits for, directly or not (DependsOn, Ref, GetAtt)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        resource = resources.get(todo.pop())
        if resource is None:
            continue
        depends = resource.get("DependsOn", [])
        for name in [*([depends] if isinstance(depends, str) else depends), *references(resource)]:
            if name in resources and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[cdk.Stack, dict[str, Any]]]:
    module = user_app()
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("team_app_existing")))
    deployment = load_deployment(APP / "deployment.yaml")
    platform = module.InferencePlatform(app, "TeamInferencePlatform", deployment=deployment)
    models = module.ModelServing(app, "TeamModels", deployment=deployment, platform=platform)
    assembly = app.synth()
    return {
        stack.stack_name: (stack, json.loads(Path(assembly.directory, stack.template_file).read_text()))
        for stack in (platform, models)
    }


def test_everything_the_user_app_puts_on_the_cluster_comes_after_the_check(
    stacks: dict[str, tuple[cdk.Stack, dict[str, Any]]],
) -> None:
    holders = [name for name, (_, t) in stacks.items() if any(r["Type"] == CHECK for r in t["Resources"].values())]
    assert holders == ["TeamInferencePlatform"]
    check_stack, check_template = stacks["TeamInferencePlatform"]
    (check_id,) = [i for i, r in check_template["Resources"].items() if r["Type"] == CHECK]
    cluster_group = load_deployment(APP / "deployment.yaml").cluster.existing.security_group_id
    unordered = []
    for name, (stack, template) in stacks.items():
        if check_stack in stack.dependencies:
            continue  # the whole stack deploys after the one that holds the check
        resources = template["Resources"]
        for logical_id, resource in resources.items():
            acts = resource["Type"] in ON_THE_CLUSTER or (
                resource["Type"] == "AWS::EC2::SecurityGroupIngress"
                and resource["Properties"]["GroupId"] == cluster_group
            )
            if acts and check_id not in after(resources, logical_id):
                unordered.append(f"{name}/{logical_id} ({resource['Type']})")
    assert unordered == []


def test_the_serving_stack_deploys_after_the_platform(stacks: dict[str, tuple[cdk.Stack, dict[str, Any]]]) -> None:
    models, _ = stacks["TeamModels"]
    platform, _ = stacks["TeamInferencePlatform"]
    assert platform in models.dependencies


def test_a_user_app_with_the_cluster_and_its_models_in_one_stack_orders_them_after_the_check(tmp_path: Path) -> None:
    """A team may hold the imported cluster and its serving units in ONE stack: no stack dependency orders anything
    then, and the check's refusal of a namespace that already has Pod Identity associations would see the unit's own
    associations, made beside it, on a correct first deploy."""
    module = user_app()
    app = cdk.App(outdir=str(tmp_path))
    deployment = load_deployment(APP / "deployment.yaml")
    platform = module.InferencePlatform(app, "TeamAllInOne", deployment=deployment)
    image = ServingImage(platform, "Image", props=ImageProps(config=deployment.image, deployment_name=deployment.name))
    ServingWorkloads(
        platform,
        "Workloads",
        props=ServingWorkloadsProps(
            deployment=deployment,
            cluster=platform.inference_cluster.cluster,
            image_uri=image.image_uri,
            prerequisites=[*platform.inference_cluster.prerequisites, *platform.inference_cluster.addons.charts],
            metrics_collector_cidrs=platform.network.collector_cidrs,
            metrics_workspace=platform.observability.workspace,
        ),
    )
    assembly = app.synth()
    resources = json.loads(Path(assembly.directory, platform.template_file).read_text())["Resources"]
    (check_id,) = [i for i, r in resources.items() if r["Type"] == CHECK]
    unordered = [
        f"{logical_id} ({resource['Type']})"
        for logical_id, resource in resources.items()
        if resource["Type"] in ON_THE_CLUSTER and check_id not in after(resources, logical_id)
    ]
    assert unordered == []
