"""The metric names a PromQL expression reads (pdstack's router's and vLLM's), and a series name without its
histogram or counter suffix."""

from __future__ import annotations

import re

METRIC = re.compile(r"\b(pdstack_router_[a-z_]+|vllm:[a-z_]+)")


def base_name(metric: str) -> str:
    """A series name without its histogram or counter suffix (what the exporter's code names)."""
    return re.sub(r"(_bucket|_sum|_count|_total)$", "", metric)
