"""The fake engine's timing model: what one vLLM engine step costs, from a roofline of the modelled GPU.

The modelled deployment is Llama-3.1-8B in bf16 on one H100 SXM 80GB, vLLM's V1 scheduler (continuous batching with
chunked prefill: one step runs the prefill tokens admitted this step and one decode token for every running request).

    step_ms = weights_ms                                   every step reads all weights once (memory bound)
            + kv_read_ms_per_token * context tokens of the running requests   (attention reads their KV)
            + prefill_ms_per_token * uncached prompt tokens prefilled this step (compute bound)

So prefill time grows with the UNCACHED prompt tokens (cached blocks are skipped, as vLLM skips them), and the time
per output token grows with the running batch and its context. A decode that pulls KV over NIXL waits
``transfer_ms_per_token`` per pulled token before it joins the batch (vLLM's WAITING_FOR_REMOTE_KVS).

Parameters, each from a published figure (sources in ``SOURCES``):
- weights 8.03e9 params x 2 bytes = 16.1 GB; H100 SXM HBM3 3.35 TB/s -> 4.8 ms; at ~80% of peak bandwidth 6.0 ms.
- KV per token: 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes = 131 kB; / (0.8 x 3.35 TB/s) = 0.049 us.
- prefill: 2 x 8.03e9 FLOP per token; H100 SXM dense bf16 989 TFLOP/s at 50% MFU -> 0.032 ms per token
  (~31k prompt tokens/s, in line with the ~12.5k output tok/s third-party vLLM figure for mixed load below).
- KV capacity: (80 GB x 0.9 gpu_memory_utilization - 16.1 GB weights - ~4 GB activations) / 131 kB = ~396k tokens.
  The bench scales capacity down with its workloads (see ``bench/workloads``): what matters for routing is the ratio
  of the prefix working set to one engine's cache, which each scenario sets like llm-d's benchmark does (the shared
  prefixes overflow one engine, fit in the cluster).
- host KV tier (issue 24): a block evicted from HBM reloads over the GPU's PCIe Gen5 x16 link (~64 GB/s per
  direction, ~50 GB/s achieved): 131 kB / 50 GB/s = 0.0026 ms per token, added to the step that prefills the request
  (an upper bound: vLLM's reload is asynchronous and delays only the request, not its whole batch).
- NIXL over EFA (p5: 32 x 100 Gb/s = 400 GB/s node aggregate; one decode pulls on its share) ~ 25 GB/s per pull:
  131 kB / 25 GB/s = 0.005 ms per token.

``time_scale`` stretches every modelled millisecond into that many wall milliseconds. The fake engines are Python
processes sharing two cores with the router under test and the load generator: at time_scale 1 a decode step (~6 ms)
would be within a few multiples of Python's own per-chunk cost and the fake would measure itself. Every system runs
on the same scaled engines, so comparisons within a run hold; absolute numbers are "H100 x time_scale".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SOURCES = {
    "llama-3.1-8b": "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (32 layers, 8 KV heads, "
    "head_dim 128, 8.03B parameters)",
    "h100-sxm": "https://www.nvidia.com/en-us/data-center/h100/ (HBM3 3.35 TB/s, bf16 dense 989 TFLOP/s)",
    "vllm-throughput": "https://www.morphllm.com/vllm-benchmarks (Llama 3.1 8B on 1x H100, ~12.5k output tok/s)",
    "p5-efa": "https://aws.amazon.com/ec2/instance-types/p5/ (3200 Gbps EFA per p5.48xlarge)",
    "pcie-gen5": "https://pcisig.com/pci-express-6.0-specification (PCIe 5.0: 32 GT/s per lane, x16 ~64 GB/s per "
    "direction; an H100 SXM's host link); ~80% of it achieved for large copies",
}


class EngineTiming(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights_ms: float = Field(default=6.0, ge=0, description="one step's weight read, ms")
    kv_read_ms_per_token: float = Field(default=0.000049, ge=0, description="attention KV read per context token")
    prefill_ms_per_token: float = Field(default=0.032, ge=0, description="per uncached prompt token")
    prefill_attention_ms_per_pair: float = Field(
        default=0.0,
        ge=0,
        description="per (uncached prompt token, earlier token) pair: a long prompt's attention "
        "FLOPs (0 in the toy: its prompts are short; bench/fake_engine/hardware.py)",
    )
    transfer_ms_per_token: float = Field(default=0.005, ge=0, description="NIXL pull per token (decode side)")
    host_load_ms_per_token: float = Field(default=0.0026, ge=0, description="host-tier reload per token (PCIe)")
    max_batched_tokens: int = Field(default=8192, ge=1, description="vLLM max_num_batched_tokens (chunked prefill)")
    max_running: int = Field(default=256, ge=1, description="vLLM max_num_seqs")
    time_scale: float = Field(default=1.0, gt=0, description="wall ms per modelled ms")

    def step_ms(self, prefill_tokens: int, context_tokens: int, prefill_pairs: float = 0.0) -> float:
        """Modelled duration of one engine step, before ``time_scale``. ``prefill_pairs``: the attention pairs of the
        prefilled tokens (each new token attends to the cached ones and the new ones before it)."""
        return (
            self.weights_ms
            + self.kv_read_ms_per_token * context_tokens
            + self.prefill_ms_per_token * prefill_tokens
            + self.prefill_attention_ms_per_pair * prefill_pairs
        )

    @staticmethod
    def attention_pairs(cached_tokens: int, new_tokens: int) -> float:
        return new_tokens * cached_tokens + new_tokens * (new_tokens + 1) / 2

    def transfer_ms(self, tokens: int) -> float:
        return self.transfer_ms_per_token * tokens

    def host_load_ms(self, tokens: int) -> float:
        return self.host_load_ms_per_token * tokens
