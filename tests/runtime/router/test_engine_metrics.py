"""Reading load and block size out of vLLM's Prometheus text."""

from __future__ import annotations

from runtime.router.engines.load_metrics import read_engine_load

TEXT = b"""# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting{engine="1",model_name="tiny"} 2.0
vllm:num_requests_waiting_by_reason{engine="0",reason="x"} 99.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="tiny"} 0.5
vllm:cache_config_info{block_size="32",cache_dtype="auto",engine="0"} 1.0
"""


def test_reads_waiting_usage_and_block_size() -> None:
    load = read_engine_load(TEXT)
    assert (load.waiting, load.kv_usage, load.block_size) == (5.0, 0.5, 32)


def test_missing_families_read_as_missing() -> None:
    assert read_engine_load(b"other 1\n") == read_engine_load(b"")
    empty = read_engine_load(b"")
    assert (empty.waiting, empty.kv_usage, empty.block_size, empty.running) == (None, None, None, None)


def test_a_non_finite_sample_is_a_missing_reading() -> None:
    text = (
        b'vllm:num_requests_waiting{engine="0"} NaN\nvllm:num_requests_waiting{engine="1"} 2.0\n'
        b'vllm:kv_cache_usage_perc{engine="0"} +Inf\nvllm:num_requests_running{engine="0"} -Inf\n'
    )
    load = read_engine_load(text)
    assert (load.waiting, load.kv_usage, load.running) == (2.0, None, None)
