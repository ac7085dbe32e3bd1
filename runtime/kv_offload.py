"""The host-memory KV tier of a worker: vLLM's native offloading, next to NIXL in one MultiConnector.

vLLM 0.32's own switch, ``--kv-offloading-size``, cannot be used with P/D: ``VllmConfig._post_init_kv_transfer_config``
(``vllm/config/vllm.py``) then overwrites ``kv_transfer_config.kv_connector`` with ``OffloadingConnector`` and
``kv_role`` with ``kv_both``, dropping the NixlConnector. So the worker writes what that switch would have made, as
the second child of a ``MultiConnector`` (``vllm/distributed/kv_transfer/kv_connector/v1/multi_connector.py``:
``kv_connector_extra_config.connectors`` lists KVTransferConfig dicts, each built as ``KVTransferConfig(**ktc)``):

- NixlConnector first: ``MultiConnector.get_num_new_matched_tokens`` gives a request to the first child that
  reports new matched tokens, and a P/D pull (``do_remote_prefill``) must go to NIXL; every other request finds no
  NIXL match and falls to the offloading child's host hits. Saves go to every child.
- OffloadingConnector second, ``kv_role: kv_both`` (as ``_post_init_kv_transfer_config`` sets it),
  ``cpu_bytes_to_use`` = GiB x 2**30 (the same conversion; ``vllm/v1/kv_offload/cpu/spec.py`` reads it, the total
  over the engine's TP ranks), and ``self_describing_kv_events: true`` so its ``BlockStored(medium="CPU")`` events carry
  token ids and parent hashes like the device's (``.../offloading/events.py``); the router needs them only for a
  block it never saw in HBM.

On CUDA the buffer is one shared mapping in ``/dev/shm`` (``vllm/v1/kv_offload/cpu/shared_offload_region.py``:
``/dev/shm/vllm_offload_{engine_id}.mmap``, checked against the free space of /dev/shm), so the pod's /dev/shm and its
memory limit must hold it: infra/workloads/worker_objects.py and infra/gpu_capacity/node_capacity.py.
"""

from __future__ import annotations

import math
from typing import Any

GIB = 1 << 30

OFFLOADING_CONNECTOR = "OffloadingConnector"
MULTI_CONNECTOR = "MultiConnector"


def offloading_connector(host_gib: float) -> dict[str, Any]:
    """The OffloadingConnector child of one engine holding ``host_gib`` GiB of KV in host memory."""
    return {
        "kv_connector": OFFLOADING_CONNECTOR,
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"cpu_bytes_to_use": int(host_gib * GIB), "self_describing_kv_events": True},
    }


def with_host_tier(nixl: dict[str, Any], host_gib: float) -> dict[str, Any]:
    """``nixl`` (a NixlConnector KVTransferConfig dict) and a host tier of ``host_gib`` under one MultiConnector; the
    outer ``kv_role`` is NIXL's (the proxy's ``kv_transfer_params`` and vLLM's producer/consumer checks read it)."""
    return {
        "kv_connector": MULTI_CONNECTOR,
        "kv_role": nixl["kv_role"],
        "kv_connector_extra_config": {"connectors": [nixl, offloading_connector(host_gib)]},
    }


def host_tier_gib_per_pod(host_gib: float, engines_per_pod: int) -> int:
    """Whole GiB of /dev/shm one worker pod's engines map: every data-parallel rank on the node is an engine with
    its own buffer (its own VllmConfig, its own connector)."""
    return math.ceil(host_gib * engines_per_pod)
