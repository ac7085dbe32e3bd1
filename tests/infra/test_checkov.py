"""checkov (pinned, in its own venv .venv-checkov made by the Makefile) over the synthesized CloudFormation templates
and the rendered Kubernetes objects. Every finding must be listed in infra/compliance/checkov_skips.py, scoped to its
resources, and every listed skip must still match a finding.

The Helm releases (device plugins, LeaderWorkerSet, KEDA, Cluster Autoscaler) are not scanned: checkov reads a chart
only from its sources with the helm binary, and neither is here offline; their values are pinned and tested in the
cluster, schedulability and autoscaling tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.compliance.checkov_skips import CLOUDFORMATION, KUBERNETES, Skip
from infra.config import Deployment, parse_deployment
from infra.workloads.stack import serving_objects
from tests.support.synthesis import REPO, SHIPPED, Synthesized, load_yaml

CHECKOV = Path(os.environ.get("PDSTACK_CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))
CHECKOV_STAMP = ".venv-checkov/.installed"  # the Makefile target that installs it
IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving:0123456789abcdef0123"


@dataclass(frozen=True)
class Finding:
    check: str
    resource: str
    file: str

    def __str__(self) -> str:
        return f"{self.check} on {self.resource} ({self.file})"


def run_checkov(framework: str, files: list[Path]) -> list[Finding]:
    """Findings of one checkov run; fails when checkov is missing, errs, parses nothing or mis-parses a file."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make {CHECKOV_STAMP}` (make test does)")
    command = [
        str(CHECKOV),
        "--framework",
        framework,
        "--output",
        "json",
        "--quiet",
        "--compact",
        "--soft-fail",
        "--skip-download",
        *[arg for f in files for arg in ("-f", str(f))],
    ]
    # --skip-download and no API key: nothing is fetched from the vendor's platform; the checks are all local.
    environment = {k: v for k, v in os.environ.items() if k not in ("BC_API_KEY", "PRISMA_API_URL")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    reports: Any = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    (report,) = [r for r in reports if r.get("check_type") == framework]
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 0, summary
    return [
        Finding(f["check_id"], f["resource"], Path(f["file_path"]).name) for f in report["results"]["failed_checks"]
    ]


def unlisted(findings: list[Finding], skips: tuple[Skip, ...]) -> list[Finding]:
    return sorted(
        {
            f
            for f in findings
            if not any(s.check == f.check and any(fnmatchcase(f.resource, p) for p in s.resources) for s in skips)
        },
        key=str,
    )


def stale(findings: list[Finding], skips: tuple[Skip, ...]) -> list[str]:
    return [
        f"{s.check} {pattern}"
        for s in skips
        for pattern in s.resources
        if not any(f.check == s.check and fnmatchcase(f.resource, pattern) for f in findings)
    ]


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
