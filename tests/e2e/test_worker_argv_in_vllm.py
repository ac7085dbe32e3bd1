"""The worker's vLLM command, parsed by the pinned vLLM's own argument parser and config classes (what runs here
cannot use EFA, so an EFA node's command is checked this way): the LIBFABRIC backend reaches NixlConnector's
``kv_connector_extra_config.backends`` and the block size is the default 128 llm-d's AWS overlay uses. Runs in the
vLLM test venv, without starting an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.worker import DecodeWorker, PrefillWorker
from tests.support.runtime_inputs import p5_host, serving
from tests.support.vllm_parse import parse_in_vllm

pytestmark = pytest.mark.e2e

PARSE = """
kv = engine.kv_transfer_config
print(json.dumps({"model": args.model_tag or args.model, "block_size": engine.block_size,
                  "connector": kv.kv_connector, "role": kv.kv_role,
                  "backends": kv.kv_connector_extra_config.get("backends"),
                  "kv_events": engine.kv_events_config.enable_kv_cache_events}))
"""


@pytest.mark.parametrize("worker", [PrefillWorker, DecodeWorker])
def test_the_efa_node_command_parses_in_the_pinned_vllm(
    vllm_python: Path, worker: type[PrefillWorker] | type[DecodeWorker]
) -> None:
    launch = worker(serving(), p5_host(efa=32), "/models/llama", {}).launch()
    parsed = parse_in_vllm(vllm_python, PARSE, launch.argv)
    assert parsed == {
        "model": "/models/llama",
        "block_size": 128,
        "connector": "NixlConnector",
        "role": worker.kv_role,
        "backends": ["LIBFABRIC"],
        "kv_events": True,
    }
    assert launch.env["NIXL_LIBFABRIC_NUM_THREADS"] == "4"
