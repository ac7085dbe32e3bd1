"""checkov (pinned, in its own venv .venv-checkov made by the Makefile) over the synthesized CloudFormation templates
and the rendered Kubernetes objects. Every finding must be listed in infra/compliance/checkov_skips.py, scoped to its
resources, and every listed skip must still match a finding.

The Helm releases (device plugins, LeaderWorkerSet, KEDA, Cluster Autoscaler) are not scanned: checkov reads a chart
only from its sources with the helm binary, and neither is here offline; their values are pinned and tested in the
cluster, schedulability and autoscaling tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.compliance.checkov_skips import CLOUDFORMATION, KUBERNETES
from infra.config import Deployment, parse_deployment
from infra.workloads.stack import serving_objects
from tests.support.checkov import Finding, run_checkov, stale, unlisted
from tests.support.synthesis import SHIPPED, Synthesized, load_yaml

IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving:0123456789abcdef0123"


def manifests(deployment: Deployment) -> list[dict[str, Any]]:
    """The applied objects; a LeaderWorkerSet (a kind checkov does not know) as one Deployment per pod template, so
    every pod check applies (checkov's root-user checks skip PodTemplate)."""
    objects: list[dict[str, Any]] = []
    for obj in serving_objects(deployment, IMAGE):
        if obj["kind"] != "LeaderWorkerSet":
            objects.append(obj)
            continue
        for part in ("leader", "worker"):
            template = obj["spec"]["leaderWorkerTemplate"][f"{part}Template"]
            objects.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {
                        "name": f"{obj['metadata']['name']}-{part}",
                        "namespace": obj["metadata"]["namespace"],
                    },
                    "spec": {"selector": {"matchLabels": template["metadata"]["labels"]}, "template": template},
                }
            )
    return objects


@pytest.fixture(scope="module")
def cloudformation_findings(request: pytest.FixtureRequest) -> list[Finding]:
    """Every shipped deployment's templates (each synthesized once per session)."""
    synths: list[Synthesized] = [request.getfixturevalue(name) for name in SHIPPED]
    return run_checkov("cloudformation", [f for synth in synths for f in synth.template_files()])


@pytest.fixture(scope="module")
def kubernetes_findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    directory = tmp_path_factory.mktemp("checkov-manifests")
    files = []
    for name, file in SHIPPED.items():
        deployment = parse_deployment(load_yaml(file))
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(manifests(deployment), sort_keys=False))
        files.append(path)
    return run_checkov("kubernetes", files)


def test_every_cloudformation_finding_is_a_listed_skip(cloudformation_findings: list[Finding]) -> None:
    missing = unlisted(cloudformation_findings, CLOUDFORMATION)
    assert not missing, "fix these or list them in infra/compliance/checkov_skips.py:\n" + "\n".join(map(str, missing))


def test_every_kubernetes_finding_is_a_listed_skip(kubernetes_findings: list[Finding]) -> None:
    missing = unlisted(kubernetes_findings, KUBERNETES)
    assert not missing, "fix these or list them in infra/compliance/checkov_skips.py:\n" + "\n".join(map(str, missing))


def test_every_listed_skip_still_matches_a_finding(
    cloudformation_findings: list[Finding], kubernetes_findings: list[Finding]
) -> None:
    rotten = stale(cloudformation_findings, CLOUDFORMATION) + stale(kubernetes_findings, KUBERNETES)
    assert not rotten, (
        "remove these from infra/compliance/checkov_skips.py, nothing fails them any more:\n" + "\n".join(rotten)
    )


def test_every_skip_gives_a_reason() -> None:
    for skip in (*CLOUDFORMATION, *KUBERNETES):
        assert skip.check.startswith("CKV") and skip.resources and len(skip.reason) > 40, skip


def test_checkov_catches_a_privileged_engine(tmp_path: Path) -> None:
    """The runner and the list together: a privileged engine is a finding that no skip covers."""
    objects = manifests(parse_deployment(load_yaml("default.yaml")))
    (decode,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdstack-decode"]
    decode["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    path = tmp_path / "privileged.yaml"
    path.write_text(yaml.safe_dump(decode))
    missing = unlisted(run_checkov("kubernetes", [path]), KUBERNETES)
    assert Finding("CKV_K8S_16", "Deployment.pdstack.pdstack-decode", "privileged.yaml") in missing
