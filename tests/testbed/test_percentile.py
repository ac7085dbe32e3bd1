"""The one percentile definition: linear interpolation between closest ranks, the standard library's inclusive
quantiles (and its median); the nearest-rank index some benches used before gave the upper middle instead."""

from __future__ import annotations

import math
import statistics

import pytest

from testbed.percentile import percentile


def test_interpolates_between_the_closest_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0], 0.9) == pytest.approx(9.0)
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0 and percentile([3.0, 1.0, 2.0], 1.0) == 3.0


def test_agrees_with_the_standard_librarys_inclusive_quantiles_and_median() -> None:
    values = [float((i * 7919) % 103) for i in range(57)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (0.5, 0.9, 0.99):
        assert percentile(values, q) == pytest.approx(cuts[round(q * 100) - 1])
    assert percentile(values[:10], 0.5) == statistics.median(values[:10])


def test_no_values_is_nan_and_q_outside_0_1_is_refused() -> None:
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile([1.0], 99)
