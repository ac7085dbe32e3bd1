"""Reads the few numbers the scheduler needs from an engine's Prometheus text, without parsing all of it.

vLLM's /metrics is long (histograms per model); only a few families matter here, so lines are matched by prefix and
summed across label sets (one engine may report several data-parallel ranks). ``process_start_time_seconds`` comes
from prometheus_client's process collector in vLLM's API server: when it changes, the engine restarted.

A sample that is not a finite number (Prometheus text allows ``NaN``, ``+Inf``, ``-Inf``) is a missing reading: a
family with no finite sample reads as None, and the registry keeps what it knew (one engine's NaN must never reach
the scheduler's arithmetic, where it turns every comparison false).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_BLOCK_SIZE_LABEL = re.compile(rb'block_size="(\d+)"')
_RUNNING = b"vllm:num_requests_running"
_WAITING = b"vllm:num_requests_waiting"
_KV_USAGE = b"vllm:kv_cache_usage_perc"
_CACHE_INFO = b"vllm:cache_config_info"
_STARTED = b"process_start_time_seconds "


@dataclass(frozen=True)
class EngineLoad:
    waiting: float | None
    kv_usage: float | None
    block_size: int | None
    started_at: float | None = None
    running: float | None = None


def read_engine_load(text: bytes) -> EngineLoad:
    running: list[float] = []
    waiting: list[float] = []
    usage: list[float] = []
    block_size = None
    started_at = None
    for line in text.split(b"\n"):
        if line.startswith(_STARTED):
            started_at = _value(line)
        if not line.startswith(b"vllm:"):
            continue
        for family, values in ((_RUNNING, running), (_WAITING, waiting), (_KV_USAGE, usage)):
            if line.startswith(family) and line[len(family) : len(family) + 1] in (b"{", b" "):
                value = _value(line)
                if value is not None:
                    values.append(value)
                break
        else:
            if line.startswith(_CACHE_INFO) and block_size is None:
                found = _BLOCK_SIZE_LABEL.search(line)
                if found:
                    block_size = int(found.group(1))
    return EngineLoad(
        waiting=sum(waiting) if waiting else None,
        kv_usage=max(usage) if usage else None,
        block_size=block_size,
        started_at=started_at,
        running=sum(running) if running else None,
    )


def _value(line: bytes) -> float | None:
    try:
        value = float(line.rsplit(b" ", 1)[1])
    except (IndexError, ValueError):
        return None
    return value if math.isfinite(value) else None
