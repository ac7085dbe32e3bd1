"""cfn-lint over every synthesized template: no errors (warnings W3005 are CDK's, ignored in .cfnlintrc.yaml)."""

from __future__ import annotations

import pytest

from tests.support.cfn_lint import cfn_lint_errors
from tests.support.synthesis import INFRA_FIXTURES, Synthesized

# cfn-lint checks instance types against each region's offerings. Environment-agnostic templates are linted in
# us-east-1 (cfn-lint's default); the every-type deployment in us-east-2, the one region whose offerings (in
# cfn-lint's data) hold all five catalog types: p5e.48xlarge is regional.
LINT_REGIONS = {
    "default": "us-east-1",
    "capacity_block": "us-east-2",
    "all_types": "us-east-2",
    "hyperpod": "us-east-1",
    "wide_ep": "us-east-1",
    "kv_tiers": "us-east-1",
    "two_models": "us-east-1",
    "existing_cluster": "us-east-1",
}


def test_every_infra_fixture_is_linted() -> None:
    assert set(LINT_REGIONS) == set(INFRA_FIXTURES)


@pytest.mark.parametrize("fixture", sorted(LINT_REGIONS))
def test_cfn_lint_reports_no_errors(request: pytest.FixtureRequest, fixture: str) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    assert len(synth.template_files()) == len(synth.stacks.all)
    region = synth.deployment.region or LINT_REGIONS[fixture]
    assert cfn_lint_errors(synth.template_files(), region) == []
