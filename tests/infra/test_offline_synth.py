"""The app synthesizes with no network at all (a fresh network namespace: not even a route), as `make synth`
promises: no AWS credentials, no context lookups, no Docker, no downloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.synthesis import REPO, SHIPPED, Synthesized


def test_every_shipped_deployment_is_a_fixture_of_every_infra_check() -> None:
    """cfn-lint, cdk-nag, checkov, the schedulability rehearsal and this test iterate over SHIPPED."""
    assert sorted(SHIPPED.values()) == sorted(p.name for p in (REPO / "deployments").glob("*.yaml"))


@pytest.mark.parametrize("deployment", sorted(SHIPPED.values()))
def test_synthesizes_without_network(tmp_path: Path, deployment: str) -> None:
    outdir = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps({"deployment": f"deployments/{deployment}"}),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_PROFILE": "",
    }
    # -r maps the caller to root in a user namespace, so an unprivileged developer can run this too.
    result = subprocess.run(
        ["unshare", "-rn", sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    templates = sorted(p.name for p in outdir.glob("*.template.json"))
    assert len(templates) >= 4 and all(name.endswith(".template.json") for name in templates)


@pytest.mark.parametrize("deployment", sorted(SHIPPED))
def test_no_shipped_deployment_needs_a_context_lookup(request: pytest.FixtureRequest, deployment: str) -> None:
    """A lookup at synth (Vpc.from_lookup, a hosted zone, an AMI) does not fail a synthesis without AWS: the app
    records it under ``missing`` in the cloud assembly's manifest and goes on with dummy values, which only the CDK
    CLI resolves (with credentials) on a second pass. So the offline promise is: no ``missing`` entry."""
    synthesized: Synthesized = request.getfixturevalue(deployment)
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())
    assert manifest.get("missing", []) == []
