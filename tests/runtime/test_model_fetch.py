"""ModelFetch against a real S3-compatible server (moto in server mode on loopback), through real boto3."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from runtime.model_fetch import ModelFetch, ModelFetchError
from testbed.ports import free_ports
from tests.support.runtime_inputs import serving

FILES = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"]}).encode(),
    "tokenizer.json": b"{}" * 1000,
    "model-00001-of-00002.safetensors": bytes(range(256)) * 4096,
    "model-00002-of-00002.safetensors": b"\x01" * 300_000,
    "nested/generation_config.json": b"{}",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, tmp_path: Path) -> str:
    """Credentials and the endpoint as a pod would get them (environment), never the machine's own config."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return s3_endpoint


@pytest.fixture
def bucket(aws: str, request: pytest.FixtureRequest) -> str:
    name = f"models-{request.node.name.replace('_', '-')[:40].lower()}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    for key, body in FILES.items():
        client.put_object(Bucket=name, Key=f"llama/{key}", Body=body)
    client.put_object(Bucket=name, Key="other/unrelated.bin", Body=b"x")
    return name


def fetcher(source: str, cache: Path) -> ModelFetch:
    return ModelFetch(serving(model={"source": source, "served_name": "m", "cache_dir": str(cache)}).model)


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_downloads_the_prefix_into_the_cache(bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fetch = fetcher(f"s3://{bucket}/llama", tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="runtime.model_fetch"):
        path = fetch.ensure()
    assert path == str(tmp_path / "cache" / bucket / "llama")
    assert tree(Path(path)) == FILES
    progress = [record for record in caplog.records if record.getMessage() == "model_fetch_progress"]
    assert len(progress) == len(FILES)
    assert progress[-1].pdstack_fields["bytes_done"] == sum(map(len, FILES.values()))  # type: ignore[attr-defined]


def test_files_already_present_at_the_same_size_are_skipped(
    bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fetch = fetcher(f"s3://{bucket}/llama/", tmp_path)
    target = Path(fetch.ensure())
    (target / "config.json").write_bytes(b"X" * len(FILES["config.json"]))  # same size: trusted, kept
    (target / "tokenizer.json").write_bytes(b"short")  # different size: fetched again
    with caplog.at_level(logging.INFO, logger="runtime.model_fetch"):
        fetch.ensure()
    done = next(r for r in caplog.records if r.getMessage() == "model_fetch_done")
    assert done.pdstack_fields["skipped"] == len(FILES) - 1  # type: ignore[attr-defined]
    assert (target / "config.json").read_bytes() == b"X" * len(FILES["config.json"])
    assert (target / "tokenizer.json").read_bytes() == FILES["tokenizer.json"]


def test_a_partial_download_resumes_from_where_it_stopped(bucket: str, tmp_path: Path) -> None:
    fetch = fetcher(f"s3://{bucket}/llama", tmp_path)
    target = Path(fetch.local_path())
    shard = FILES["model-00001-of-00002.safetensors"]
    target.mkdir(parents=True)
    half = len(shard) // 2
    # A marked first half is kept as it is: only the remainder is requested (a ranged GET), then the file completes.
    (target / "model-00001-of-00002.safetensors.part").write_bytes(b"\xee" * half)
    fetch.ensure()
    assert (target / "model-00001-of-00002.safetensors").read_bytes() == b"\xee" * half + shard[half:]
    assert not list(target.glob("*.part"))


def test_missing_bucket_is_a_clear_error(aws: str, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match=r"S3 bucket 'no-such-bucket' does not exist \(serving.model.source="):
        fetcher("s3://no-such-bucket/llama", tmp_path).ensure()


def test_empty_prefix_is_a_clear_error(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match=f"no objects under s3://{bucket}/missing"):
        fetcher(f"s3://{bucket}/missing", tmp_path).ensure()


def test_no_credentials_is_a_clear_error(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ModelFetchError, match="no AWS credentials to read s3://models/llama: give the pod's service"):
        fetcher("s3://models/llama", tmp_path).ensure()


def test_reachable_reports_for_preflight(bucket: str, tmp_path: Path) -> None:
    assert fetcher(f"s3://{bucket}/llama", tmp_path).reachable() == (True, f"s3://{bucket}/llama listable")
    assert fetcher("s3://no-such-bucket/x", tmp_path).reachable()[0] is False


def test_local_path_must_exist(tmp_path: Path) -> None:
    assert fetcher(str(tmp_path), tmp_path).ensure() == str(tmp_path)
    with pytest.raises(ModelFetchError, match="no such path on this node"):
        fetcher(str(tmp_path / "absent"), tmp_path).ensure()


def test_only_the_tokenizer_files_are_fetched(bucket: str, tmp_path: Path) -> None:
    from runtime.model_fetch import TOKENIZER_FILES

    model = serving(model={"source": f"s3://{bucket}/llama", "served_name": "llama"}).model
    path = ModelFetch(model, only=TOKENIZER_FILES, cache_dir=str(tmp_path / "tok")).ensure()
    fetched = sorted(p.name for p in Path(path).rglob("*") if p.is_file())
    assert fetched == ["config.json", "tokenizer.json"]  # no weights, nothing nested


def test_router_fetches_the_tokenizer_of_an_s3_model(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.router import server

    monkeypatch.setattr(server, "TOKENIZER_CACHE", str(tmp_path / "router-tok"))
    router = server.RouterServer.__new__(server.RouterServer)
    router.serving = serving(model={"source": f"s3://{bucket}/llama", "served_name": "llama"})
    directory = router._fetch_tokenizer()
    assert directory is not None and (Path(directory) / "tokenizer.json").is_file()
    assert not list(Path(directory).glob("*.safetensors"))


class _PausingClient:
    """boto3's S3 client, except that the body of ``key`` stops after its first half until ``release`` is set (and
    says so through ``paused``): a download caught in the middle, as when a second engine starts on the same node."""

    def __init__(self, key: str) -> None:
        self._client = boto3.client("s3")
        self.key = key
        self.paused = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def get_object(self, **request: object) -> dict:
        response = self._client.get_object(**request)
        if request["Key"] != self.key:
            return response
        data = response["Body"].read()
        pausing = self

        class Body:
            def iter_chunks(self, _size: int) -> Iterator[bytes]:
                yield data[: len(data) // 2]
                pausing.paused.set()
                pausing.release.wait(60)  # a guard against a hang; the outcome never depends on it
                yield data[len(data) // 2 :]

        return {**response, "Body": Body()}


def test_two_engines_fetching_the_same_model_on_one_node_do_not_share_a_part_file(bucket: str, tmp_path: Path) -> None:
    """Engine A is half-way through a file when engine B starts on the same cache: B must wait for A, not append to
    A's .part file and rename it under A (which left a corrupt file and failed A)."""
    name = "model-00002-of-00002.safetensors"
    cache = tmp_path / "cache"
    source = f"s3://{bucket}/llama"
    model = serving(model={"source": source, "served_name": "m", "cache_dir": str(cache)}).model
    paused = _PausingClient(f"llama/{name}")
    first = ModelFetch(model, s3_client=lambda: paused, only=frozenset({name}))
    second = ModelFetch(model, only=frozenset({name}))
    results: dict[str, object] = {}

    def run(label: str, fetch: ModelFetch) -> None:
        try:
            results[label] = fetch.ensure()
        except Exception as error:
            results[label] = error

    engine_a = threading.Thread(target=run, args=("a", first))
    engine_a.start()
    assert paused.paused.wait(60)
    engine_b = threading.Thread(target=run, args=("b", second))
    engine_b.start()
    engine_b.join(2)  # without the lock B finishes here; with it B waits for A either way
    paused.release.set()
    engine_a.join(60)
    engine_b.join(60)
    target = cache / bucket / "llama"
    assert results == {"a": str(target), "b": str(target)}
    assert (target / name).read_bytes() == FILES[name]
    assert not (target / (name + ".part")).exists()
