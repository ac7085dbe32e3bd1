"""Bad input: OpenAI-shaped errors with the right status, never a 500, and the router keeps serving. A property-based
test throws arbitrary bodies, content types and paths at it."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.router_cluster import Cluster


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    return make_cluster(pd_threshold_tokens=100000, max_body_bytes=4096)


def error_of(payload: bytes) -> dict[str, object]:
    error = json.loads(payload)["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    return error


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"prompt": "hi"}', 400, "model"),
        (b'{"model": "tiny"}', 400, "prompt"),
        (b'{"model": "tiny", "prompt": "hi", "stream": "yes"}', 400, "stream"),
        (b'{"model": "nope", "prompt": "hi"}', 404, "model"),
    ],
)
def test_client_errors_get_openai_error_bodies(cluster: Cluster, raw: bytes, status: int, param: str | None) -> None:
    got, _, payload = cluster.post("/v1/completions", None, raw=raw)
    assert got == status
    assert error_of(payload)["param"] == param


def test_chat_without_messages_is_400(cluster: Cluster) -> None:
    got, _, payload = cluster.post("/v1/chat/completions", {"model": "tiny", "messages": []})
    assert got == 400 and error_of(payload)["param"] == "messages"


def test_body_over_the_limit_is_413(cluster: Cluster) -> None:
    got, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": "x" * 5000})
    assert got == 413 and "4096" in str(error_of(payload)["message"])


def test_wrong_content_type_is_415(cluster: Cluster) -> None:
    got, _, payload = cluster.post(
        "/v1/completions", None, raw=b"model=tiny", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert got == 415 and error_of(payload)["type"] == "invalid_request_error"


def test_unknown_path_and_method(cluster: Cluster) -> None:
    assert cluster.get("/v1/nothing")[0] == 404
    assert cluster.get("/v1/completions")[0] == 405
    error_of(cluster.get("/v1/nothing")[2])


def test_models_health_ready_and_request_id(cluster: Cluster) -> None:
    status, _, payload = cluster.get("/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(payload)["data"]] == ["tiny"]
    assert cluster.get("/health")[0] == 200 and cluster.get("/ready")[0] == 200
    _, headers, _ = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi"}, headers={"X-Request-Id": "abc"})
    assert headers["X-Request-Id"] == "abc" and cluster.decodes[0].headers[0]["X-Request-Id"] == "abc"


def test_ready_is_503_without_a_healthy_decode(cluster: Cluster) -> None:
    cluster.decodes[0].healthy = False
    cluster.wait_for(lambda: cluster.get("/ready")[0] == 503)
    got, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi"})
    assert got == 503 and error_of(payload)["code"] == "no_engine_available"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.one_of(st.just("tiny"), json_values),
            "prompt": json_values,
            "messages": json_values,
            "stream": json_values,
            "max_tokens": json_values,
        },
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]),
    raw=bodies,
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]),
)
def test_no_client_input_gets_a_500(cluster: Cluster, path: str, raw: bytes, content_type: str) -> None:
    status, _, payload = cluster.post(path, None, raw=raw, headers={"Content-Type": content_type})
    assert status < 500, payload
    if status >= 400:
        error_of(payload)
    assert cluster.get("/health")[0] == 200


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_json_nested_100k_deep_is_400(cluster: Cluster, path: str) -> None:
    raw = b'{"model": "tiny", "prompt": ' + b"[" * 1800 + b"]" * 1800 + b"}"  # under the 4096-byte cap here
    for body in (raw, b"[" * 2000 + b"]" * 2000):
        status, _, payload = cluster.post(path, None, raw=body)
        assert status == 400, payload
        error_of(payload)


def test_json_nested_100k_deep_in_a_large_body_is_400(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    raw = (
        b'{"model": "tiny", "messages": [{"role": "user", "content": "hi", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}]}"
    )
    status, _, payload = cluster.post("/v1/chat/completions", None, raw=raw)
    assert status == 400 and error_of(payload)["code"] == "invalid_json"
    assert cluster.decodes[0].received == []


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le", "utf-32-be"])
def test_bodies_not_in_utf8_are_400(cluster: Cluster, encoding: str) -> None:
    """RFC 8259 section 8.1: JSON between systems is UTF-8. Python's json.loads guesses UTF-16/32 from bytes; the
    engines are sent the client's bytes as they are, so the router takes only what it can forward as it is."""
    raw = json.dumps({"model": "tiny", "prompt": "hi"}).encode(encoding)
    status, _, payload = cluster.post("/v1/completions", None, raw=raw)
    assert status == 400 and error_of(payload)["code"] == "invalid_json", payload
    assert cluster.decodes[0].received == []


def test_600k_messages_are_refused_before_they_are_validated(make_cluster) -> None:
    """A 7.8 MB body of 600k tiny messages took the event loop 2.4-3.4 s to validate (every other request waited):
    past ``max_messages`` it is refused right after the JSON is read, as OpenAI's API refuses too long an array."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000, max_body_bytes=16 * 1024 * 1024)
    raw = json.dumps({"model": "tiny", "messages": [{"role": "u"}] * 600_000}).encode()
    status, _, payload = cluster.post("/v1/chat/completions", None, raw=raw)
    error = error_of(payload)
    assert status == 400 and error["param"] == "messages" and error["code"] == "array_above_max_length"
    assert "10000" in str(error["message"]) and "600000" in str(error["message"])
    batch = json.dumps({"model": "tiny", "prompt": ["a"] * 20_000}).encode()
    status, _, payload = cluster.post("/v1/completions", None, raw=batch)
    assert status == 400 and error_of(payload)["param"] == "prompt"
    assert cluster.decodes[0].received == []
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": list(range(20_000)), "max_tokens": 1})[0] == 200


def test_an_unknown_huge_model_name_is_cut_short_in_the_error_and_the_log(
    make_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    from runtime.json_log import JsonLineFormatter

    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    with caplog.at_level("INFO", logger="runtime"):
        status, _, payload = cluster.post("/v1/completions", {"model": "m" * 1_000_000, "prompt": "hi"})
    assert status == 404 and len(payload) < 2000, len(payload)
    assert str(error_of(payload)["message"]).startswith("The model `mmm")
    assert caplog.records and max(len(JsonLineFormatter().format(record)) for record in caplog.records) < 2000
