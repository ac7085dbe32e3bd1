"""The simulated engine's ``/metrics`` in vLLM's Prometheus names and labels (``model_name``, ``engine``)."""

from __future__ import annotations

from bench.fake_engine.simulator import EngineSimulator


def metrics_text(simulator: EngineSimulator, model: str) -> str:
    counters = simulator.counters
    labels = f'engine="0",model_name="{model}"'
    lines: list[str] = []

    def family(name: str, kind: str, samples: list[tuple[str, float]]) -> None:
        suffix = "_total" if kind == "counter" else ""  # prometheus_client names counter families with _total
        lines.append(f"# HELP vllm:{name}{suffix} {name.replace('_', ' ')}")
        lines.append(f"# TYPE vllm:{name}{suffix} {kind}")
        for extra, value in samples:
            lines.append(f"vllm:{name}{suffix}{{{labels}{extra}}} {float(value)}")

    family("num_requests_running", "gauge", [("", len(simulator.running) + len(simulator.transferring))])
    family("num_requests_waiting", "gauge", [("", len(simulator.waiting))])
    family("kv_cache_usage_perc", "gauge", [("", simulator.cache.usage())])
    family("prefix_cache_queries", "counter", [("", counters.prefix_queries)])
    family("prefix_cache_hits", "counter", [("", counters.prefix_hits)])
    family("prompt_tokens", "counter", [("", counters.prompt_tokens)])
    family(
        "prompt_tokens_by_source",
        "counter",
        [
            (',source="local_compute"', counters.local_compute),
            (',source="local_cache_hit"', counters.local_cache_hit),
            (',source="external_kv_transfer"', counters.external_kv_transfer),
        ],
    )
    family("generation_tokens", "counter", [("", counters.generation_tokens)])
    family("request_success", "counter", [(',finished_reason="length"', counters.finished)])
    lines.append("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig")
    lines.append("# TYPE vllm:cache_config_info gauge")
    lines.append(
        f'vllm:cache_config_info{{block_size="{simulator.block_size}",engine="0",'
        f'enable_prefix_caching="True",num_gpu_blocks="{simulator.cache.capacity}"}} 1.0'
    )
    return "\n".join(lines) + "\n"
