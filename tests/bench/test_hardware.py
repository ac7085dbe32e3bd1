"""Engines sized like the hardware (bench/fake_engine/hardware.py): the roofline lands on the hand-derived figures of
bench/fake_engine/timing.py for Llama-3.1-8B on one H100, and moves the way the hardware says when the GPU, the
tensor-parallel degree or the model changes."""

from __future__ import annotations

import pytest

from bench.fake_engine.hardware import model_spec, size_engine
from bench.fake_engine.timing import EngineTiming


def test_8b_on_one_h100_is_the_hand_derived_engine() -> None:
    """timing.py's docstring: weights 6.0 ms, 0.049 us per context token, 0.032 ms per prompt token, 0.005 ms per
    pulled token, ~396k KV tokens at 80 GB (the catalog's 80 GiB leaves ~10% more)."""
    size = size_engine("llama-3.1-8b", "p5.48xlarge")
    toy = EngineTiming()
    assert size.timing.weights_ms == pytest.approx(toy.weights_ms, rel=0.01)
    assert size.timing.kv_read_ms_per_token == pytest.approx(toy.kv_read_ms_per_token, rel=0.01)
    assert size.timing.prefill_ms_per_token == pytest.approx(toy.prefill_ms_per_token, rel=0.02)
    assert size.timing.transfer_ms_per_token == pytest.approx(toy.transfer_ms_per_token, rel=0.05)
    assert 396_000 < size.kv_tokens < 396_000 * 1.12
    assert model_spec("llama-3.1-8b").kv_bytes_per_token == 131072
    assert size.engines_per_node == 8 and size.capacity_blocks(16) == size.kv_tokens // 16


def test_a_long_prompts_attention_is_in_the_step() -> None:
    """40k uncached tokens of an 8B model: attention adds ~65% to the linear layers' prefill."""
    timing = size_engine("llama-3.1-8b", "p5.48xlarge").timing
    linear = timing.step_ms(40_000, 0)
    full = timing.step_ms(40_000, 0, timing.attention_pairs(0, 40_000))
    assert 1.5 < full / linear < 1.8
    assert timing.attention_pairs(1000, 10) == 10 * 1000 + 55


def test_faster_memory_speeds_decode_not_prefill() -> None:
    h100 = size_engine("llama-3.1-8b", "p5.48xlarge").timing
    h200 = size_engine("llama-3.1-8b", "p5e.48xlarge")
    assert h200.timing.weights_ms == pytest.approx(h100.weights_ms * 3.35 / 4.8)
    assert h200.timing.prefill_ms_per_token == pytest.approx(h100.prefill_ms_per_token)  # same bf16 FLOPS
    assert h200.kv_tokens > 2 * size_engine("llama-3.1-8b", "p5.48xlarge").kv_tokens  # 141 vs 80 GiB, same weights
    b200 = size_engine("llama-3.1-8b", "p6-b200.48xlarge").timing
    assert b200.prefill_ms_per_token < h100.prefill_ms_per_token / 2


def test_tensor_parallel_divides_the_step_and_the_node() -> None:
    tp4 = size_engine("llama-3.1-70b", "p5.48xlarge", tp=4)
    tp8 = size_engine("llama-3.1-70b", "p5.48xlarge", tp=8)
    assert tp8.timing.weights_ms == pytest.approx(tp4.timing.weights_ms / 2)
    assert (tp4.engines_per_node, tp8.engines_per_node) == (2, 1)
    assert tp8.kv_tokens > 2 * tp4.kv_tokens  # the weights take a smaller share of twice the memory


def test_a_model_that_does_not_fit_or_a_bad_tp_is_refused() -> None:
    with pytest.raises(ValueError, match="use a larger tp"):
        size_engine("llama-3.1-70b", "p5.48xlarge", tp=1)
    with pytest.raises(ValueError, match="tp 3 must divide"):
        size_engine("llama-3.1-8b", "p5.48xlarge", tp=3)
    with pytest.raises(KeyError, match="known models"):
        size_engine("gpt-5", "p5.48xlarge")
