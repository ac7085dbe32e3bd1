"""Reads the few numbers the scheduler needs from an engine's Prometheus text, without parsing all of it.

vLLM's /metrics is long (histograms per model); only a few families matter here, so lines are matched by prefix and
summed across label sets (one engine may report several data-parallel ranks). ``process_start_time_seconds`` comes
from prometheus_client's process collector in vLLM's API server: when it changes, the engine restarted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK_SIZE_LABEL = re.compile(rb'block_size="(\d+)"')
_WAITING = b"vllm:num_requests_waiting"
_KV_USAGE = b"vllm:kv_cache_usage_perc"
_CACHE_INFO = b"vllm:cache_config_info"
_STARTED = b"process_start_time_seconds "


@dataclass(frozen=True)
class EngineLoad:
    waiting: float
    kv_usage: float
    block_size: int | None
    started_at: float | None = None


def read_engine_load(text: bytes) -> EngineLoad:
    waiting = 0.0
    usage: list[float] = []
    block_size = None
    started_at = None
    for line in text.split(b"\n"):
        if line.startswith(_STARTED):
            started_at = _value(line)
        if not line.startswith(b"vllm:"):
            continue
        if line.startswith(_WAITING) and line[len(_WAITING):len(_WAITING) + 1] in (b"{", b" "):
            waiting += _value(line)
        elif line.startswith(_KV_USAGE) and line[len(_KV_USAGE):len(_KV_USAGE) + 1] in (b"{", b" "):
            usage.append(_value(line))
        elif line.startswith(_CACHE_INFO) and block_size is None:
            found = _BLOCK_SIZE_LABEL.search(line)
            if found:
                block_size = int(found.group(1))
    return EngineLoad(waiting=waiting, kv_usage=max(usage, default=0.0), block_size=block_size, started_at=started_at)


def _value(line: bytes) -> float:
    try:
        return float(line.rsplit(b" ", 1)[1])
    except (IndexError, ValueError):
        return 0.0
