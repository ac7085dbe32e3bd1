"""destroy, then deploy again: no resource may outlive its stack under a name the next deploy needs, and no two
deployments may claim the same account- or region-unique name.

Walks every template of every shipped deployment: each retained resource must be one the lifecycle keeps on
purpose (and then carry no physical name, so a redeploy creates a fresh one beside it); each physical name that is
unique per account or region must be derived from the deployment's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.synthesis import SHIPPED, Synthesized

# The property that holds the physical name, for every type whose name is unique per account and region (or
# globally): CloudFormation resource reference, "Return values" / the property's "Update requires: Replacement".
UNIQUE_NAMES = {
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::ECR::PullThroughCacheRule": "EcrRepositoryPrefix",  # PullThroughCacheRuleAlreadyExistsException
    "AWS::EKS::Cluster": "Name",
    "AWS::SageMaker::Cluster": "ClusterName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::EC2::SecurityGroup": "GroupName",  # unique per VPC; pdstack's VPC is its own, named anyway if set
}
RETAINING = {"Retain", "RetainExceptOnCreate", "Snapshot"}
# Kept on purpose when the stack goes: (template file suffix, logical-id prefix) -> why.
RETAINED_BY_DESIGN = {
    (
        "hyperpod.template.json",
        "LifecycleAccessLogs",
    ): "S3 server access logs of the lifecycle bucket, kept for audit after the cluster is gone; unnamed, so a "
    "redeploy creates a new bucket beside it",
}


def _text(value: Any, own: set[str]) -> str:
    """A name as CloudFormation will build it: literal parts kept, a reference to a resource of the same template
    (whose generated name is new on every create, e.g. /aws/lambda/<function>) as <own>, anything else (account,
    region) as <ref>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_text(part, own) for part in parts)
    if isinstance(value, dict) and value.get("Ref") in own:
        return "<own>"
    return "<ref>"


def _resources(synth: Synthesized) -> list[tuple[Path, str, dict[str, Any], set[str]]]:
    found = []
    for path in synth.template_files():
        resources = json.loads(path.read_text()).get("Resources", {})
        found += [(path, logical_id, resource, set(resources)) for logical_id, resource in resources.items()]
    return found


@pytest.fixture(params=list(SHIPPED))
def shipped(request: pytest.FixtureRequest) -> Synthesized:
    return request.getfixturevalue(request.param)


def test_nothing_is_retained_but_what_the_lifecycle_keeps_on_purpose(shipped: Synthesized) -> None:
    retained = []
    for path, logical_id, resource, _ in _resources(shipped):
        if resource.get("DeletionPolicy") in RETAINING or resource.get("UpdateReplacePolicy") in RETAINING:
            on_purpose = any(
                path.name.endswith(suffix) and logical_id.startswith(prefix) for suffix, prefix in RETAINED_BY_DESIGN
            )
            name_property = UNIQUE_NAMES.get(resource["Type"])
            if not on_purpose or (name_property and name_property in resource.get("Properties", {})):
                retained.append(f"{path.name}: {logical_id} ({resource['Type']})")
    assert retained == []


def test_every_unique_name_belongs_to_its_deployment(shipped: Synthesized) -> None:
    """Two deployments in one account and region (or one destroyed and deployed again beside a leftover) never
    claim the same name: each is derived from the deployment's own name."""
    foreign = []
    found = 0
    for path, logical_id, resource, own in _resources(shipped):
        name_property = UNIQUE_NAMES.get(resource["Type"])
        if name_property is None or name_property not in resource.get("Properties", {}):
            continue
        found += 1
        name = _text(resource["Properties"][name_property], own)
        if shipped.deployment.name not in name and "<own>" not in name:
            foreign.append(f"{path.name}: {logical_id} {name_property}={name!r}")
    assert found  # the walk sees the named resources (cluster, repository at least)
    assert foreign == []
