"""Test-bed quirk 3, on the test servers' PYTHONPATH only: nixl 1.5.1's Python API creates every agent with a
progress-thread delay of 0, so each server's UCX progress thread spins a whole core even when idle. On a 2-core test
machine that starves the engines (first requests took 8-30 s). Creating agents with pthrDelay=1000 us keeps the
progress thread (turning it off stalls reads) at a small fraction of a core. Never part of the product.
"""

from __future__ import annotations

PROGRESS_THREAD_DELAY_US = 1000

try:
    from nixl_cu12 import _bindings
except ImportError:  # not a NIXL venv: nothing to adjust
    _bindings = None

if _bindings is not None and not getattr(_bindings, "_pdstack_testbed_patched", False):
    _agent = _bindings.nixlAgent

    def _agent_with_progress_delay(name, config, *args, **kwargs):
        config.pthrDelay = PROGRESS_THREAD_DELAY_US
        return _agent(name, config, *args, **kwargs)

    _bindings.nixlAgent = _agent_with_progress_delay
    _bindings._pdstack_testbed_patched = True

# Test-bed quirk 5: on a CPU with AMX, vLLM 0.32's CPU attention picks its AMX kernel (bf16, block size a multiple of
# 32), which needs the process's permission to use AMX tile state (Linux arch_prctl ARCH_REQ_XCOMP_PERM). oneDNN asks
# for it on a prefill-sized matmul; a decode server whose first forward is a one-token step over pulled KV never ran
# one, and its worker died with SIGILL inside cpu_attention_with_kv_cache (seen Dec 2026 on a Sapphire Rapids VM).
# Asking once at interpreter start covers every vLLM process. A no-op without AMX or without torch.
try:
    import torch as _torch

    _torch._C._cpu._init_amx()
except (ImportError, AttributeError):
    pass
