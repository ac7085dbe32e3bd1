"""Where an engine keeps a KV block, and what a hit there is worth to the router.

vLLM 0.32 names the medium on every ``BlockStored`` and ``BlockRemoved`` it publishes
(``vllm/distributed/kv_events.py``: ``MEDIUM_GPU = "GPU"``, ``MEDIUM_CPU = "CPU"``, ``MEDIUM_STORAGE = "STORAGE"``).
The engine's own block pool reports ``GPU`` (``vllm/v1/core/block_pool.py``, ``medium=MEDIUM_GPU``); the native
offloading connector reports its copies as ``CPU`` (``vllm/distributed/kv_transfer/kv_connector/v1/offloading/
events.py``, ``_MEDIUM_TO_EVENT_STR``), with their own store and removal events: a block evicted from HBM after it
was offloaded gets a ``BlockRemoved(medium="GPU")`` and stays on the host until a ``BlockRemoved(medium="CPU")``.
Events without a medium (older engines, the simulated engine) are device blocks.

A prompt's leading blocks are reusable wherever they live, but a host block must be copied back into HBM first.
"""

from __future__ import annotations

DEVICE = 1
"""Bit of a block held in the engine's HBM."""
HOST = 2
"""Bit of a block held in the engine's host-memory offload tier."""

_MEDIA = {None: DEVICE, "GPU": DEVICE, "gpu": DEVICE, "CPU": HOST, "cpu": HOST}


def tier_of(medium: str | None) -> int | None:
    """The tier bit of an event's medium; None for a medium the router does not route on (``STORAGE``: the pinned
    vLLM has no shared or disk tier pdstack configures)."""
    return _MEDIA.get(medium)


HOST_HIT_WEIGHT = 0.8
"""What the prefix scorer credits a leading block held only on the host, a block in HBM being 1 and a miss 0.

llm-d's precise prefix scorer weighs GPU 1.0 and CPU 0.8 (llm-d v1.0's tiered prefix cache, 2026-10).
pdstack takes the same value, for its own reason: it must order an engine that holds a prefix in HBM above one that
holds it on the host (the copy costs PCIe time and HBM it frees from nothing), and the host one far above a miss
(the copy is a few percent of the recompute, HOST_LOAD_COST). With 0.8, a host hit of the whole prompt outranks an HBM
hit of less than 80% of it: the recompute of the other 20% costs more than the copy of 100% (HOST_LOAD_COST is at most
0.1), and load spreads ties. The simulated engine's benchmark (bench/) measures the effect."""

HOST_LOAD_COST = 0.1
"""A host-tier token's load as a share of its recompute, for the P/D decider: a host hit is cached, but its copy back
over PCIe still costs this much of computing it.

Derivation (an upper bound, not a measurement): one token's KV over PCIe Gen5 x16 (64 GB/s per direction, PCI-SIG;
about 50 GB/s achieved) against its prefill at 50% MFU of an H100's 989 dense BF16 TFLOPS (NVIDIA H100 datasheet).
Llama-3.1-8B (128 KiB of KV per token, 16 GFLOPs per token): 2.6 us against 32 us, 0.08. Llama-3.1-70B on TP8 (each
GPU loads its eighth over its own link): 0.8 us against 35 us, 0.02."""
