"""Real disaggregation on real vLLM (CPU): prefill and decode started through ``python -m runtime``, the two-phase
request driven by hand, and proof that decode pulled the prompt's KV over NIXL instead of computing it."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.routed_pair import PdPair

pytestmark = pytest.mark.e2e

PROMPT = (
    "def read_configuration(path):\n    import json, os\n    with open(os.path.expanduser(path)) as handle:\n"
    "        return json.load(handle)\n\nclass Scheduler:\n    def __init__(self, workers):\n"
    "        self.workers = list(workers)\n"
)
PREFILL_LEG_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def post(url: str, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k == "source"))
            found[(sample.name, labels)] = sample.value
    return found


def prompt_tokens(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], source: str) -> float:
    return metrics[("vllm:prompt_tokens_by_source_total", (("source", source),))]


def disaggregated(pair: PdPair, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The P/D flow: the prefill leg (one token, no stream, our kv_transfer_params), then the original body to
    decode with the params prefill returned, pasted verbatim; the same request id on both legs."""
    request_id = f"e2e-{uuid.uuid4()}"
    prefill_body = {**body, "max_tokens": 1, "stream": False, "n": 1, "kv_transfer_params": PREFILL_LEG_PARAMS}
    prefill_body.pop("stream_options", None)
    first = post(pair.prefill.url, path, prefill_body, request_id)
    assert first.get("kv_transfer_params"), f"prefill returned no kv_transfer_params: {first}"
    second = post(pair.decode.url, path, {**body, "kv_transfer_params": first["kv_transfer_params"]}, request_id)
    return first, second


@pytest.mark.parametrize(
    ("path", "body", "text_of"),
    [
        ("/v1/completions", {"prompt": PROMPT}, lambda answer: answer["choices"][0]["text"]),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": PROMPT}]},
            lambda answer: answer["choices"][0]["message"]["content"],
        ),
    ],
    ids=["completions", "chat"],
)
def test_decode_pulls_the_prompt_kv_and_matches_a_single_server(
    pd_pair: PdPair, path: str, body: dict[str, Any], text_of: Any
) -> None:
    body = {"model": pd_pair.model, "max_tokens": 16, "temperature": 0.0, "seed": 0, **body}
    single = post(pd_pair.prefill.url, path, body, f"single-{uuid.uuid4()}")

    before = samples(pd_pair.decode.url)
    started = time.monotonic()
    first, second = disaggregated(pd_pair, path, body)
    print(f"\nP/D round trip {path}: {time.monotonic() - started:.3f} s")
    after = samples(pd_pair.decode.url)

    params = first["kv_transfer_params"]
    assert params["do_remote_prefill"] is True
    assert {"remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size"} <= set(params)
    assert (params["remote_host"], params["tp_size"]) == ("127.0.0.1", 1)
    prompt_length = second["usage"]["prompt_tokens"]
    assert prompt_tokens(after, "external_kv_transfer") - prompt_tokens(before, "external_kv_transfer") == prompt_length
    assert prompt_tokens(after, "local_compute") == prompt_tokens(before, "local_compute")
    assert after[("vllm:nixl_num_failed_transfers_total", ())] == 0
    assert after[("vllm:nixl_xfer_time_seconds_count", ())] > before[("vllm:nixl_xfer_time_seconds_count", ())]
    assert text_of(second) == text_of(single)
    assert second["usage"]["completion_tokens"] == single["usage"]["completion_tokens"] == 16
