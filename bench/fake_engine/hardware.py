"""Simulated engines sized like the hardware: one engine's KV capacity and step times from a model (parameters, KV
bytes per token) and an EC2 instance type (its GPUs' memory from runtime/catalog.py, their memory bandwidth and
FLOPS below), by the same roofline bench/fake_engine/timing.py derives by hand for Llama-3.1-8B on one H100.

For an engine of ``tp`` GPUs (tensor parallel, one node):
- weights_ms = params x bytes per param / (tp x HBM bandwidth x BANDWIDTH_EFFICIENCY)      (every step reads them)
- kv_read_ms_per_token = KV bytes per token / (tp x HBM bandwidth x BANDWIDTH_EFFICIENCY)   (attention, per context
  token of every decoding request)
- prefill_ms_per_token = 2 x params FLOP / (tp x dense bf16 FLOPS x MFU)                   (the linear layers)
- prefill_attention_ms_per_pair = 4 x layers x hidden FLOP / (tp x FLOPS x MFU), per (prompt token, earlier token)
  pair: a long prompt's attention (a 40k-token prompt of an 8B model: +65% over the linear part)
- transfer_ms_per_token = KV bytes per token / (tp x the instance's EFA bandwidth per GPU x NETWORK_EFFICIENCY)
- KV capacity = (tp x GPU memory x GPU_MEMORY_UTILIZATION - weights - tp x ACTIVATION_RESERVE) / KV bytes per token

Its limits (what it does NOT model): tensor-parallel communication (all-reduce per layer: TP4/TP8 steps are slower
than 1/tp of TP1's, so TP sizes are optimistic), chunked prefill's chunks (a prompt's prefill is one step), CUDA
graphs and kernel launch floors (small batches), quantized weights or KV (bf16 only), speculative decoding, MoE
routing (dense models only), prefix-cache tiers off the GPU (CPU, disk), NIXL's per-transfer fixed costs and EFA
congestion (a pull is bandwidth only), the KV pull overlapping anything. The efficiencies are assumptions, not
measurements: 80% of peak HBM bandwidth (what memory-bound decode kernels reach), 50% MFU in prefill, 50% of the
per-GPU EFA share per pull. Capacity is what vLLM's profiler would leave at gpu_memory_utilization 0.9, to ~5%.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bench.fake_engine.timing import EngineTiming
from runtime.catalog import InstanceSpec, instance_spec

BANDWIDTH_EFFICIENCY = 0.8
MFU = 0.5
NETWORK_EFFICIENCY = 0.5
GPU_MEMORY_UTILIZATION = 0.9
ACTIVATION_RESERVE_GB = 4.0
GB = 1e9
GIB = 2**30

SOURCES = {
    "llama-3.1-8b": "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (32 layers, hidden 4096, "
    "8 KV heads, head_dim 128, max_position_embeddings 131072; 8.03B parameters on the model card)",
    "llama-3.1-70b": "https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json (80 layers, hidden 8192, "
    "8 KV heads, head_dim 128, max_position_embeddings 131072; 70.6B parameters on the model card)",
    "H100": "https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM: HBM3 3.35 TB/s, bf16 dense 989 TFLOP/s "
    "(1,979 with sparsity))",
    "H200": "https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM: HBM3e 4.8 TB/s, bf16 dense 989 TFLOP/s "
    "(1,979 with sparsity))",
    "B200": "https://www.nvidia.com/en-us/data-center/hgx/ (HGX B200, 8 GPUs: 64 TB/s HBM3e, FP16/BF16 36 PFLOP/s "
    "with sparsity: per GPU 8 TB/s, 2.25 PFLOP/s dense)",
    "A100": "https://www.nvidia.com/en-us/data-center/a100/ (A100 40GB SXM: HBM2 1,555 GB/s, bf16 dense 312 TFLOP/s)",
    "instances": "runtime/catalog.py (GPUs per node, GPU memory, EFA Gbps; AWS EC2 accelerated computing docs)",
}


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params_b: float = Field(gt=0, description="parameters, billions")
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    bytes_per_param: float = 2.0
    kv_bytes_per_value: float = 2.0
    max_context: int = Field(gt=0, description="the longest prompt + output the model serves")

    @property
    def weights_bytes(self) -> float:
        return self.params_b * 1e9 * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes_per_value


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hbm_tb_s: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="llama-3.1-8b", params_b=8.03, layers=32, hidden=4096, kv_heads=8, head_dim=128, max_context=131072
        ),
        ModelSpec(
            name="llama-3.1-70b", params_b=70.6, layers=80, hidden=8192, kv_heads=8, head_dim=128, max_context=131072
        ),
    )
}

GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec(name="H100", hbm_tb_s=3.35, bf16_dense_tflops=989.0),
        GpuSpec(name="H200", hbm_tb_s=4.8, bf16_dense_tflops=989.0),
        GpuSpec(name="B200", hbm_tb_s=8.0, bf16_dense_tflops=2250.0),
        GpuSpec(name="A100", hbm_tb_s=1.555, bf16_dense_tflops=312.0),
    )
}


class EngineSize(BaseModel):
    """One engine of ``tp`` GPUs of ``instance``: its timing and its KV capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    instance: str
    tp: int
    timing: EngineTiming
    kv_tokens: int
    engines_per_node: int

    def capacity_blocks(self, block_size: int) -> int:
        return self.kv_tokens // block_size


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def size_engine(
    model: ModelSpec | str, instance: InstanceSpec | str, tp: int = 1, time_scale: float = 1.0
) -> EngineSize:
    """The engine ``model`` makes on ``tp`` GPUs of ``instance``; ValueError when it does not fit."""
    model = model_spec(model) if isinstance(model, str) else model
    instance = instance_spec(instance) if isinstance(instance, str) else instance
    if tp < 1 or instance.gpus % tp:
        raise ValueError(f"tp {tp} must divide {instance.name}'s {instance.gpus} GPUs")
    gpu = GPUS[instance.gpu_model]
    bandwidth = tp * gpu.hbm_tb_s * 1e12 * BANDWIDTH_EFFICIENCY  # bytes/s
    flops = tp * gpu.bf16_dense_tflops * 1e12 * MFU
    efa_per_gpu = instance.network_gbps / 8 * GB / instance.gpus  # bytes/s
    free = (
        tp * instance.gpu_memory_gib * GIB * GPU_MEMORY_UTILIZATION
        - model.weights_bytes
        - tp * ACTIVATION_RESERVE_GB * GB
    )
    kv_tokens = int(free // model.kv_bytes_per_token)
    if kv_tokens < model.max_context // 8:
        raise ValueError(
            f"{model.name} leaves {max(0, kv_tokens)} KV tokens on {tp} x {instance.gpu_model} "
            f"({instance.name}); use a larger tp"
        )
    ms = 1000.0
    timing = EngineTiming(
        weights_ms=model.weights_bytes / bandwidth * ms,
        kv_read_ms_per_token=model.kv_bytes_per_token / bandwidth * ms,
        prefill_ms_per_token=2 * model.params_b * 1e9 / flops * ms,
        prefill_attention_ms_per_pair=4 * model.layers * model.hidden / flops * ms,
        transfer_ms_per_token=model.kv_bytes_per_token / (tp * efa_per_gpu * NETWORK_EFFICIENCY) * ms,
        time_scale=time_scale,
    )
    return EngineSize(
        model=model.name,
        instance=instance.name,
        tp=tp,
        timing=timing,
        kv_tokens=kv_tokens,
        engines_per_node=instance.gpus // tp,
    )
