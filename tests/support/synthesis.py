"""Synthesizing deployments for the infra checks: the app built as app.py builds it (stacks + cdk-nag + our checks),
the shipped deployment files, and a per-session cache that synthesizes each deployment once (the session fixtures
in tests/infra/conftest.py and every variant a test builds go through it)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import yaml
from aws_cdk.assertions import Template

from infra.compliance.nag import register_checks
from infra.config import Deployment, load_deployment, parse_deployment
from infra.deployment_stacks import DeploymentStacks
from runtime.catalog import INSTANCE_CATALOG

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"


@dataclass
class Synthesized:
    deployment: Deployment
    stacks: DeploymentStacks
    outdir: Path
    network: Template | None  # None for an existing VPC (imported into the cluster stack)
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
    register_checks(app)
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    return Synthesized(
        deployment=deployment,
        stacks=stacks,
        outdir=outdir,
        network=Template.from_stack(stacks.network) if stacks.network else None,
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
SHIPPED = {
    "default": "default.yaml",
    "capacity_block": "capacity-block.yaml",
    "hyperpod": "hyperpod.yaml",
    "wide_ep": "wide-ep.yaml",
    "kv_tiers": "kv-tiers.yaml",
    "two_models": "two-models.yaml",
    "existing_cluster": "existing-cluster.yaml",
}
# The shipped deployments and the synthesis that holds one GPU node group of every catalog type.
INFRA_FIXTURES = [*SHIPPED, "all_types"]
# The example user apps (deployments/<name>/app.py), by fixture name: pdstack's app built from an example's settings
# file holds the same node groups and serving objects as the example's own stacks (tests/package asserts it), so the
# checks that need pdstack's Python objects (the schedulability rehearsal) run over the examples through it.
EXAMPLES = {"team_app": "team_app", "team_app_existing": "team_app_existing"}


def example_deployment(example: str) -> Deployment:
    """An example app's settings file (deployments/<example>/deployment.yaml)."""
    return load_deployment(DEPLOYMENTS / example / "deployment.yaml")


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


class SynthesisCache:
    """Each deployment synthesized once per test session: keyed by its parsed content (a shipped file, or a variant a
    test derives from one), so two tests that build the same deployment share one synthesis. ``synth_calls`` counts
    the syntheses it ran."""

    def __init__(
        self, outdir: Callable[[str], Path], synth: Callable[[Deployment, Path], Synthesized] = synthesize
    ) -> None:
        self._outdir = outdir
        self._synth = synth
        self._done: dict[str, Synthesized] = {}
        self.synth_calls = 0

    def get(self, deployment: Deployment) -> Synthesized:
        key = deployment.model_dump_json()
        if key not in self._done:
            self.synth_calls += 1
            self._done[key] = self._synth(deployment, self._outdir(deployment.name))
        return self._done[key]

    def shipped(self, file: str) -> Synthesized:
        """A deployment file of deployments/, as it ships."""
        return self.get(parse_deployment(load_yaml(file)))
