"""Synthesis fixtures: each deployment is synthesized ONCE per test session, with cdk-nag, and shared."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk.assertions import Template

from infra.config import Deployment, parse_deployment
from infra.deployment_stacks import DeploymentStacks
from infra.nag import register_checks
from runtime.catalog import INSTANCE_CATALOG

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"


@dataclass
class Synthesized:
    deployment: Deployment
    stacks: DeploymentStacks
    outdir: Path
    network: Template
    image: Template
    cluster: Template
    gpu_nodes: Template | None
    hyperpod: Template | None
    workloads: Template
    observability: Template | None

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    def validation_report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())


def synthesize(deployment: Deployment, outdir: Path) -> Synthesized:
    """Build the app exactly as app.py does (stacks + cdk-nag + our checks) and synthesize it into ``outdir``."""
    app = cdk.App(outdir=str(outdir), context=json.loads((REPO / "cdk.json").read_text())["context"])
    stacks = DeploymentStacks(app, deployment)
    register_checks(app, stacks)
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    return Synthesized(
        deployment=deployment,
        stacks=stacks,
        outdir=outdir,
        network=Template.from_stack(stacks.network),
        image=Template.from_stack(stacks.image),
        cluster=Template.from_stack(stacks.cluster),
        gpu_nodes=Template.from_stack(stacks.gpu_nodes) if stacks.gpu_nodes else None,
        hyperpod=Template.from_stack(stacks.hyperpod) if stacks.hyperpod else None,
        workloads=Template.from_stack(stacks.workloads),
        observability=Template.from_stack(stacks.observability) if stacks.observability else None,
    )


def load_yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOYMENTS / name).read_text())


def wide_ep_decode() -> Deployment:
    """The shipped multi-node deployment: a two-node wide expert-parallel decode replica (a LeaderWorkerSet)."""
    return parse_deployment(load_yaml("wide-ep.yaml"), "wide-ep")


# Every shipped deployment file, by the name of its session fixture: every infra check runs over each of them
# (tests/infra/test_offline_synth.py fails when a file in deployments/ is missing here).
SHIPPED = {"default": "default.yaml", "capacity_block": "capacity-block.yaml", "hyperpod": "hyperpod.yaml",
           "wide_ep": "wide-ep.yaml"}
# The shipped deployments and the synthesis that holds one GPU node group of every catalog type.
INFRA_FIXTURES = [*SHIPPED, "all_types"]


def every_instance_type() -> Deployment:
    """default.yaml with one GPU node group per catalog instance type (placement groups on), and the observability
    pipeline switched off: the synthesis that holds the switch (no collector subnets, nothing admitted for them)."""
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["observability"] = {"enabled": False}
    data["gpu_node_groups"] = [
        {"name": name.replace(".", "-"), "instance_type": name, "min_size": 0, "desired_size": 1, "max_size": 2}
        for name in sorted(INSTANCE_CATALOG)
    ]
    return parse_deployment(data, "every-instance-type")


@pytest.fixture(scope="session")
def default(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(parse_deployment(load_yaml("default.yaml")), tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def capacity_block(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(parse_deployment(load_yaml("capacity-block.yaml")), tmp_path_factory.mktemp("capacity-block"))


@pytest.fixture(scope="session")
def all_types(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(every_instance_type(), tmp_path_factory.mktemp("all-types"))


@pytest.fixture(scope="session")
def hyperpod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(parse_deployment(load_yaml("hyperpod.yaml")), tmp_path_factory.mktemp("hyperpod"))


@pytest.fixture(scope="session")
def wide_ep(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(wide_ep_decode(), tmp_path_factory.mktemp("wide-ep"))
