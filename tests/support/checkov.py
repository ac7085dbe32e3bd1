"""checkov (pinned, in its own venv .venv-checkov made by the Makefile) as the tests run it: one run's findings, and
which of them no skip in infra/compliance/checkov_skips.py covers (tests/infra/test_checkov.py, tests/package)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from infra.compliance.checkov_skips import Skip
from tests.support.synthesis import REPO

CHECKOV = Path(os.environ.get("PDSTACK_CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))
CHECKOV_STAMP = ".venv-checkov/.installed"  # the Makefile target that installs it


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
