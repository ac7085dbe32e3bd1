"""cfn-lint (pinned in tests/requirements.txt, in the test venv) as the tests run it, with the repository's
.cfnlintrc.yaml: the errors of one run over some templates (tests/infra/test_cfn_lint.py, tests/package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.synthesis import REPO

CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def cfn_lint_errors(templates: list[Path], region: str) -> list[str]:
    """cfn-lint's errors over ``templates`` linted for ``region`` (its instance-type offerings differ by region);
    warnings and informational findings are not errors. cfn-lint failing to run is an error too."""
    result = subprocess.run(
        [
            str(CFN_LINT),
            "--config-file",
            str(REPO / ".cfnlintrc.yaml"),
            "--format",
            "parseable",
            "--regions",
            region,
            "--",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Exit code bits: 1 = cfn-lint failed, 2 = errors, 4 = warnings, 8 = informational.
    if result.returncode & 3 == 0:
        return []
    errors = [line[:400] for line in result.stdout.splitlines() if ":E" in line]
    return errors or [f"cfn-lint exited {result.returncode}: {result.stderr[-2000:]}"]
