"""API-key authentication (issue 19, Security hardening): ``serving.router.api_keys_path`` names a file or a
directory of keys, re-read without a restart; the official openai SDK's Bearer key works, a wrong one raises its
AuthenticationError; health, readiness and metrics stay open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import openai
import pytest

from tests.support.router_cluster import Cluster


def client(cluster: Cluster, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key=key, max_retries=0)


def ask(cluster: Cluster, key: str) -> str:
    return client(cluster, key).completions.create(model="tiny", prompt="hi", max_tokens=2).choices[0].text


def test_the_right_key_is_served_and_a_wrong_one_is_401(make_cluster, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("team-a-key\n\n  team-b-key  \n")
    cluster: Cluster = make_cluster(api_keys_path=str(keys))
    assert ask(cluster, "team-a-key") == "t0 t1" and ask(cluster, "team-b-key") == "t0 t1"
    with pytest.raises(openai.AuthenticationError) as raised:
        ask(cluster, "team-a-key-but-longer")
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(cluster, "nope").chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        client(cluster, "nope").models.list()
    status, headers, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi"})  # no header
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"
    assert cluster.post("/tokenize", {"model": "tiny", "prompt": "hi"})[0] == 401
    assert len(cluster.decodes[0].received) == 2  # only the two served requests reached an engine
    assert [cluster.get(path)[0] for path in ("/health", "/ready")] == [200, 200]
    assert cluster.get("/metrics", cluster.metrics_url)[0] == 200
    assert cluster.metric("pdstack_router_auth_failures_total", reason="invalid") == 3
    assert cluster.metric("pdstack_router_auth_failures_total", reason="missing") == 2


def test_a_rotated_key_file_takes_effect_without_a_restart(make_cluster, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("old-key\n")
    cluster: Cluster = make_cluster(api_keys_path=str(keys))
    assert ask(cluster, "old-key") == "t0 t1"
    keys.write_text("new-key\n")
    os.utime(keys, ns=(0, 10**18))  # a new mtime even on a coarse clock
    cluster.wait_for(
        lambda: (
            cluster.post(
                "/v1/completions", {"model": "tiny", "prompt": "hi"}, headers={"Authorization": "Bearer new-key"}
            )[0]
            == 200
        )
    )
    assert ask(cluster, "new-key") == "t0 t1"
    with pytest.raises(openai.AuthenticationError):
        ask(cluster, "old-key")


def test_a_mounted_secret_directory_rotated_as_the_kubelet_does(make_cluster, tmp_path: Path) -> None:
    """A Secret volume: each key a symlink into ``..data``, itself a symlink the kubelet swaps to a new directory."""
    mount = tmp_path / "api-keys"
    mount.mkdir()

    def publish(version: str, files: dict[str, str]) -> None:
        directory = mount / f"..{version}"
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
        (mount / "..data_tmp").symlink_to(directory.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        for name in files:
            if not (mount / name).is_symlink():
                (mount / name).symlink_to(f"..data/{name}")

    publish("v1", {"team-a": "key-a1\n", "team-b": "key-b1"})
    cluster: Cluster = make_cluster(api_keys_path=str(mount))
    assert ask(cluster, "key-a1") == "t0 t1" and ask(cluster, "key-b1") == "t0 t1"
    publish("v2", {"team-a": "key-a2\n", "team-b": "key-b1"})
    cluster.wait_for(
        lambda: (
            cluster.post(
                "/v1/completions", {"model": "tiny", "prompt": "hi"}, headers={"Authorization": "Bearer key-a2"}
            )[0]
            == 200
        )
    )
    with pytest.raises(openai.AuthenticationError):
        ask(cluster, "key-a1")
    assert ask(cluster, "key-b1") == "t0 t1"
