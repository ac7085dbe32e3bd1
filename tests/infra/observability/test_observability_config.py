"""The deployment file's observability section and the SLO it alerts on: bad values are named before synthesis."""

from __future__ import annotations

import copy

import pytest

from infra.config import DeploymentError, parse_deployment
from tests.support.synthesis import load_yaml

BASE = load_yaml("default.yaml")


def with_sections(**sections: dict) -> dict:
    data = copy.deepcopy(BASE)
    data.update(sections)
    return data


def test_on_by_default_and_can_be_switched_off() -> None:
    assert parse_deployment(copy.deepcopy(BASE)).observability.enabled
    assert not parse_deployment(with_sections(observability={"enabled": False})).observability.enabled


def test_a_scrape_interval_the_managed_collector_refuses_is_named() -> None:
    with pytest.raises(DeploymentError, match=r"observability\.scrape_interval_seconds: .*greater than or equal to 30"):
        parse_deployment(with_sections(observability={"scrape_interval_seconds": 15}))


def test_a_ttft_objective_between_histogram_buckets_is_named() -> None:
    with pytest.raises(DeploymentError, match=r"slo\.ttft_seconds: must be a bucket bound .*1\.0, 2\.0, 2\.5"):
        parse_deployment(with_sections(slo={"ttft_seconds": 1.5}))
