"""A scenario's per-workload start scales must name its workloads: a misspelt kind would silently leave that
workload's sweep at its own rate (the plan the 2026-12-02 run showed ends at the ramp's top)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.harness.scenario import FULL, Scenario
from bench.workloads.generators import MultiTurn


def test_full_scales_the_workloads_it_means_to() -> None:
    kinds = {workload.kind for workload in FULL.workloads}
    assert set(FULL.start_scale) <= kinds and FULL.start_scale["multi_turn"] > 1


def test_a_start_scale_for_a_workload_not_in_the_scenario_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"start_scale names \['multi_trun'\]"):
        Scenario(name="typo", workloads=[MultiTurn(rate_rps=20.0)], start_scale={"multi_trun": 5.0})
    with pytest.raises(ValidationError, match="positive"):
        Scenario(name="zero", workloads=[MultiTurn(rate_rps=20.0)], start_scale={"multi_turn": 0.0})
