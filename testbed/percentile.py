"""The one percentile every test and benchmark reports (p50, p90, p99 ...)."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0 <= q <= 1) by linear interpolation between the closest ranks: with the values sorted
    ``x[0] <= ... <= x[n-1]`` and ``h = q * (n - 1)``, it is ``x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] -
    x[floor(h)])``. This is Hyndman and Fan's definition 7, numpy's default (``method="linear"``), the standard
    library's ``statistics.quantiles(method="inclusive")`` and ``statistics.median`` at q = 0.5. NaN for no values."""
    if not values:
        return float("nan")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
