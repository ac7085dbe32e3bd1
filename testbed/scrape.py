"""Prometheus text scraping of one process's /metrics (an engine, a router), parsed by prometheus_client."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(url: str, timeout_s: float = 10.0) -> Iterator[tuple[str, Sample]]:
    """Every sample of ``url``/metrics with the name of its family (``vllm:prefix_cache_hits`` for the sample
    ``vllm:prefix_cache_hits_total``)."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout_s) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield family.name, sample


def sample_total(url: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0.0 when there is none)."""
    return sum(
        sample.value
        for _, sample in samples(url)
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
