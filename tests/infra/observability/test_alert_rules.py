"""The alert rules against a real promtool (Debian's prometheus package, `make prometheus`): the committed rules file
is valid, and every alert fires on its synthetic story and clears again (rule_scenarios.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.config import ObservabilityConfig, ServiceLevelObjectives
from infra.observability.alerts import rule_groups
from infra.observability.generate import RULES_FILE
from tests.infra.observability.rule_scenarios import SCENARIOS, promtool_tests

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run `make prometheus`")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=120)


def alerts_by_name() -> dict[str, dict]:
    groups = rule_groups(ServiceLevelObjectives(), ObservabilityConfig())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_committed_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_summary_a_runbook_and_a_story() -> None:
    alerts = alerts_by_name()
    for name, rule in alerts.items():
        assert rule["annotations"]["summary"] and len(rule["annotations"]["runbook"]) > 40, name
    assert {s.alert for s in SCENARIOS} == set(alerts)
    for name in alerts:  # each fires at some time and is quiet at another
        expected = [firing for s in SCENARIOS if s.alert == name for _, firing in s.expected]
        assert any(expected) and not all(expected), name


def test_every_alert_fires_and_clears_on_its_synthetic_series(tmp_path: Path) -> None:
    tests = tmp_path / "pdstack_test.yaml"
    tests.write_text(yaml.safe_dump(promtool_tests(str(RULES_FILE), alerts_by_name()), sort_keys=False))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness can fail: a story whose alert is expected where it cannot fire is rejected by promtool."""
    scenario = next(s for s in SCENARIOS if s.alert == "PdstackKvCacheNearFull")
    wrong = promtool_tests(str(RULES_FILE), alerts_by_name())
    wrong["tests"] = [t for t in wrong["tests"] if t["name"].startswith(scenario.alert)]
    wrong["tests"][0]["alert_rule_test"][0]["exp_alerts"] = wrong["tests"][0]["alert_rule_test"][1]["exp_alerts"]
    tests = tmp_path / "wrong_test.yaml"
    tests.write_text(yaml.safe_dump(wrong, sort_keys=False))
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0 and "PdstackKvCacheNearFull" in result.stdout + result.stderr
