"""The official openai client works against the router unchanged (fake engines): chat and completions, streamed
and not, models, and an OpenAI-shaped error raising the SDK's own exception."""

from __future__ import annotations

import openai
import pytest

from tests.support.router_cluster import Cluster


@pytest.fixture
def client(make_cluster) -> openai.OpenAI:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="none", max_retries=0)


def test_completions_and_chat(client: openai.OpenAI) -> None:
    assert client.completions.create(model="tiny", prompt="hi", max_tokens=3).choices[0].text == "t0 t1 t2"
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert chat.choices[0].message.content == "t0 t1"
    assert [model.id for model in client.models.list()] == ["tiny"]


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "t0 t1 t2"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="hi")
