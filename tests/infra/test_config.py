"""Bad deployment files fail with one clear message naming the field, the value and what is valid."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.config import DeploymentError, load_deployment, parse_deployment
from runtime.catalog import INSTANCE_CATALOG
from tests.support.synthesis import DEPLOYMENTS, REPO, load_yaml

BASE = load_yaml("default.yaml")


def broken(**changes: object) -> dict:
    """default.yaml with dotted-path changes applied (gpu_node_groups.0.min_size=...)."""
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})  # a section left to its defaults
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return data


def error_for(data: dict) -> str:
    with pytest.raises(DeploymentError) as info:
        parse_deployment(data, "test.yaml")
    return str(info.value)


@pytest.mark.parametrize("name", sorted(p.name for p in DEPLOYMENTS.glob("*.yaml")))
def test_every_shipped_deployment_is_valid(name: str) -> None:
    deployment = load_deployment(DEPLOYMENTS / name)
    assert deployment.gpu_pools


def test_unknown_key_is_named() -> None:
    message = error_for(broken(cluster__endpoint_acess="private"))
    assert "cluster.endpoint_acess: unknown key" in message


def test_unknown_top_level_key_is_named() -> None:
    message = error_for(broken(gpu_nodegroups=[]))
    assert "gpu_nodegroups: unknown key" in message


def test_negative_size_is_rejected() -> None:
    message = error_for(broken(gpu_node_groups__0__min_size=-1))
    assert "gpu_node_groups.0.min_size" in message and "greater than or equal to 0" in message and "-1" in message


def test_inverted_sizes_are_rejected() -> None:
    message = error_for(
        broken(gpu_node_groups__0__min_size=3, gpu_node_groups__0__desired_size=2, gpu_node_groups__0__max_size=4)
    )
    assert "gpu_node_groups.0" in message
    assert "min_size <= desired_size <= max_size" in message and "min_size=3, desired_size=2" in message


def test_unknown_instance_type_lists_the_known_ones() -> None:
    message = error_for(broken(gpu_node_groups__0__instance_type="p5.4xlarge"))
    assert "gpu_node_groups.0.instance_type" in message and "'p5.4xlarge'" in message
    for known in INSTANCE_CATALOG:
        assert known in message


def test_a_node_group_and_a_serving_role_refuse_an_unknown_type_alike() -> None:
    """One check (runtime/catalog_checks.py) for every place an instance type is named: the same words after the
    field, whether the type sits in a node group, a HyperPod group's catalog lookup or a serving role."""
    group = error_for(broken(gpu_node_groups__0__instance_type="p5.4xlarge"))
    role = error_for(broken(serving__decode__instance_type="p5.4xlarge"))
    said = "unknown instance type 'p5.4xlarge'; known types: " + ", ".join(sorted(INSTANCE_CATALOG))
    assert f"gpu_node_groups.0.instance_type: {said}" in group
    assert f"serving.decode.instance_type: {said}" in role


def test_capacity_block_needs_a_reservation_id() -> None:
    message = error_for(
        broken(gpu_node_groups__0__capacity={"type": "capacity-block"}, gpu_node_groups__0__placement_group=False)
    )
    assert "gpu_node_groups.0.capacity.capacity-block" in message and "reservation_id" in message


def test_capacity_block_with_placement_group_is_rejected() -> None:
    message = error_for(
        broken(
            gpu_node_groups__0__capacity={"type": "capacity-block", "reservation_id": "cr-0123456789abcdef0"},
            gpu_node_groups__0__placement_group=True,
        )
    )
    assert "gpu_node_groups.0" in message and "placement_group" in message and "capacity-block" in message


def test_reservation_with_placement_group_is_rejected() -> None:
    """The stack's new placement group cannot use an ODCR made outside it: the nodes would never launch."""
    message = error_for(
        broken(
            gpu_node_groups__0__capacity={"type": "capacity-reservation", "reservation_id": "cr-0123456789abcdef0"},
            gpu_node_groups__0__placement_group=True,
        )
    )
    assert "gpu_node_groups.0" in message and "placement_group" in message and "capacity-reservation" in message


def test_unknown_capacity_type_lists_the_valid_ones() -> None:
    message = error_for(broken(gpu_node_groups__0__capacity={"type": "spot"}))
    assert "gpu_node_groups.0.capacity" in message
    for valid in ("on-demand", "capacity-block", "capacity-reservation"):
        assert valid in message


def test_gpu_zone_outside_the_vpc() -> None:
    message = error_for(broken(network__gpu_az_index=2))
    assert "network" in message and "gpu_az_index=2" in message and "valid: 0..1" in message


def test_digest_must_be_sha256() -> None:
    message = error_for(broken(image__base_digest="v0.9.0"))
    assert "image.base_digest" in message and "sha256" in message and "'v0.9.0'" in message


def test_public_endpoint_needs_cidrs() -> None:
    message = error_for(broken(cluster__endpoint_access="public"))
    assert "cluster" in message and "public_access_cidrs" in message


def test_open_world_cidr_is_rejected() -> None:
    message = error_for(broken(cluster__endpoint_access="public", cluster__public_access_cidrs=["0.0.0.0/0"]))
    assert "cluster.public_access_cidrs" in message and "0.0.0.0/0" in message


CERTIFICATE = "arn:aws:acm:us-east-2:123456789012:certificate/0a1b2c3d-0000-4000-8000-00000000abcd"


def test_the_load_balancer_needs_a_certificate() -> None:
    message = error_for(broken(workloads__router__internal_load_balancer=True))
    assert "workloads.router.certificate_arn" in message and "TLS listener on 443" in message
    assert parse_deployment(
        broken(workloads__router__internal_load_balancer=True, workloads__router__certificate_arn=CERTIFICATE),
        "test.yaml",
    )


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:server-certificate/router",  # an IAM certificate, not ACM
        "arn:aws:acm:us-east-2:123456789012:certificate/",
        "arn:aws:acm:us-east-2:1234:certificate/0a1b2c3d-0000-4000-8000-00000000abcd",
        "0a1b2c3d-0000-4000-8000-00000000abcd",
    ],
)
def test_the_certificate_must_be_an_acm_arn(arn: str) -> None:
    message = error_for(broken(workloads__router__internal_load_balancer=True, workloads__router__certificate_arn=arn))
    assert "workloads.router.certificate_arn: String should match pattern" in message and repr(arn) in message


def test_the_metrics_pipeline_needs_the_private_endpoint() -> None:
    """The managed collector reaches the Kubernetes API from inside the VPC (AMP user guide, prerequisites)."""
    public = {"cluster__endpoint_access": "public", "cluster__public_access_cidrs": ["203.0.113.0/24"]}
    message = error_for(broken(**public))
    assert "observability.enabled" in message and "cluster.endpoint_access" in message
    assert parse_deployment(broken(**public, observability={"enabled": False}))
    assert parse_deployment(broken(**{**public, "cluster__endpoint_access": "public-and-private"}))


def test_an_extra_engine_scraper_inside_the_vpc_is_refused() -> None:
    """A CIDR inside the VPC admits the pods of its subnets to the engines' OpenAI API."""
    message = error_for(broken(workloads__engine_metrics_scraper_cidrs=["10.0.64.0/19"]))
    assert "workloads.engine_metrics_scraper_cidrs" in message and "10.0.64.0/19" in message and "VPC" in message
    assert parse_deployment(broken(workloads__engine_metrics_scraper_cidrs=["192.168.40.0/24"]))


def test_serving_role_needs_a_matching_node_group() -> None:
    message = error_for(broken(serving__decode__instance_type="p4d.24xlarge"))
    assert "serving.decode.instance_type='p4d.24xlarge'" in message and "p5.48xlarge" in message


def test_account_without_region() -> None:
    message = error_for(broken(account="123456789012"))
    assert "account and region go together" in message


def test_more_than_two_zones_needs_an_environment() -> None:
    message = error_for(broken(network__az_count=3))
    assert "network.az_count=3" in message and "availability_zones" in message


def test_pull_through_cache_secret_must_carry_the_ecr_prefix() -> None:
    message = error_for(
        broken(
            image__pull_through_cache={
                "enabled": True,
                "credential_secret_arn": "arn:aws:secretsmanager:us-east-2:123456789012:secret:ghcr-x",
            }
        )
    )
    assert "image.pull_through_cache" in message and "ecr-pullthroughcache/" in message


def test_strings_are_not_coerced_to_numbers() -> None:
    message = error_for(broken(gpu_node_groups__0__max_size="2"))
    assert "gpu_node_groups.0.max_size" in message and "valid integer" in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="cannot read the deployment file"):
        load_deployment(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(DeploymentError, match="not valid YAML"):
        load_deployment(bad)


def test_app_exits_non_zero_with_the_message_and_synthesizes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken(gpu_node_groups__0__instance_type="p9.huge")))
    outdir = tmp_path / "out"
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps({"deployment": str(bad)})}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "gpu_node_groups.0.instance_type" in result.stderr and "p9.huge" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(outdir.glob("*.template.json"))


def test_hyperpod_needs_its_section() -> None:
    message = error_for(broken(gpu_provider="hyperpod", gpu_node_groups=[]))
    assert "gpu_provider 'hyperpod' needs a hyperpod section" in message


def test_hyperpod_instance_type_must_be_offered() -> None:
    data = load_yaml("hyperpod.yaml")
    data["hyperpod"]["instance_groups"][0]["instance_type"] = "p5.4xlarge"
    message = error_for(data)
    assert "hyperpod.instance_groups.0.instance_type" in message and "p5.4xlarge" in message


def test_hyperpod_cluster_name_fits_the_lifecycle_bucket_name() -> None:
    data = load_yaml("hyperpod.yaml")
    data["hyperpod"]["cluster_name"] = "a-very-long-hyperpod-cluster-name"
    message = error_for(data)
    assert "hyperpod.cluster_name" in message and "22" in message


def test_serving_role_checked_against_hyperpod_groups() -> None:
    data = load_yaml("hyperpod.yaml")
    data["serving"]["prefill"]["instance_type"] = "p5en.48xlarge"
    message = error_for(data)
    assert "serving.prefill.instance_type='p5en.48xlarge'" in message and "hyperpod.instance_groups" in message


def test_a_derived_pull_through_prefix_too_long_for_ecr_names_the_field() -> None:
    message = error_for(
        broken(
            name="a-deployment-name-of-thirty",
            image__base_repository="ghcr.io/example/vllm-efa",
            image__pull_through_cache={
                "enabled": True,
                "credential_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/gh",
            },
        )
    )
    assert "a-deployment-name-of-thirty-ghcr" in message and "repository_prefix" in message


def test_adopting_a_pull_through_rule_needs_its_prefix() -> None:
    message = error_for(broken(image__pull_through_cache={"enabled": True, "create_rule": False}))
    assert "image.pull_through_cache" in message and "repository_prefix" in message


def test_the_kubernetes_version_must_have_its_pins() -> None:
    message = error_for(broken(cluster__kubernetes_version="1.33"))
    assert "cluster.kubernetes_version" in message and "1.35" in message
