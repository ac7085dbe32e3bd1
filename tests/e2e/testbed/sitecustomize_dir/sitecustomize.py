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

    def _agent_with_progress_delay(name, config, *args, **kwargs):  # type: ignore[no-untyped-def]
        config.pthrDelay = PROGRESS_THREAD_DELAY_US
        return _agent(name, config, *args, **kwargs)

    _bindings.nixlAgent = _agent_with_progress_delay
    _bindings._pdstack_testbed_patched = True
