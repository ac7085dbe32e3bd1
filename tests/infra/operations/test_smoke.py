"""``smoke``: a Job through a local Kubernetes API (which runs it as a process) to a router and decode engine that
count like the real ones; EKS facts from moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.operations.serving_endpoints import ServingEndpoints
from infra.operations.smoke import SmokeError, job_manifest, parse_result
from tests.infra.operations.local_servers import FakeEngine, FakeKubernetes, MotoServer, serving
from tests.support.operations import REGION, Deployed, deployment_file, load, run_cli
from tests.support.serving_units import FILE as TWO_MODELS


@dataclass
class Cluster:
    path: Path
    kube: FakeKubernetes
    kube_url: str
    router: FakeEngine
    decode: FakeEngine


@pytest.fixture
def cluster(aws_env: MotoServer, tmp_path: Path) -> Iterator[Cluster]:
    path = deployment_file(tmp_path)
    Deployed(load(path)).everything()
    decode = FakeEngine(role="decode")
    router = FakeEngine(role="router", peer=decode)
    endpoints = ServingEndpoints()
    with serving(router) as router_url, serving(decode) as decode_url:
        kube = FakeKubernetes(
            cluster="pdstack",
            access_key="AKIATESTPDSTACK00001",
            services={
                endpoints.router_url: router_url,
                endpoints.router_metrics_url: router_url,
                endpoints.decode_url: decode_url,
            },
        )
        with serving(kube) as kube_url:
            yield Cluster(path=path, kube=kube, kube_url=kube_url, router=router, decode=decode)


def _smoke(c: Cluster, *extra: str):
    return run_cli("smoke", "--deployment", str(c.path), "--region", REGION, "--api-server", c.kube_url, *extra)


def test_smoke_through_the_router_reports_answer_disaggregation_and_kv_pull(cluster: Cluster) -> None:
    run = _smoke(cluster)

    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("created job pdstack/pdstack-smoke-")
    assert "router ready: yes" in lines
    assert any(line.startswith("answer: ' the KV cache of the prompt.' in ") for line in lines)
    assert 'disaggregated: yes (pdstack_router_decisions_total{decision="pd"} 0 -> 1)' in lines
    assert "decode pulled the KV: yes (vllm:nixl_xfer_time_seconds_count 0 -> 1)" in lines
    assert lines[-1] == "smoke passed"
    # The request carried the deployment's model, and the Job is gone afterwards.
    assert cluster.router.requests[0]["model"] == "llama-3.1-8b-instruct"
    assert cluster.kube.jobs == {}
    assert len(cluster.kube.deleted) == 1 and cluster.kube.deleted[0].endswith("?propagationPolicy=Background")
    assert cluster.kube.tokens_checked >= 4  # create, read, pods, log, delete: each with the EKS token


def test_decode_that_recomputes_instead_of_pulling_the_kv_fails_the_smoke(cluster: Cluster) -> None:
    cluster.decode.transfers = False

    run = _smoke(cluster)

    assert run.code == 1
    assert "decode pulled the KV: no (vllm:nixl_xfer_time_seconds_count 0 -> 0)" in run.out
    assert "FAILED: the router disaggregated the request but decode transferred no KV (it recomputed)" in run.out
    assert cluster.kube.jobs == {}


def test_a_request_the_router_kept_local_passes_and_says_so(cluster: Cluster) -> None:
    cluster.router.disaggregate = False

    run = _smoke(cluster, "--json")

    body = json.loads(run.out)
    assert run.code == 0
    assert body["disaggregated"] is False and body["kv_pulled"] is False and body["passed"] is True


def test_kubernetes_refusing_the_caller_is_an_access_error(cluster: Cluster) -> None:
    cluster.kube.refuse = True

    run = _smoke(cluster)

    assert run.code == 2 and run.err.count("\n") == 1
    assert run.err.startswith("error: access denied by the Kubernetes API for arn:aws:sts::123456789012:user/moto")
    assert "add it to cluster.admin_principal_arns" in run.err


def test_unreachable_api_server_is_an_access_error(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path)
    Deployed(load(path)).everything()
    with serving(FakeEngine(role="router")) as url:
        pass  # the port is closed again: nothing listens there now

    run = run_cli("smoke", "--deployment", str(path), "--region", REGION, "--api-server", url)

    assert run.code == 2 and "error: cannot reach the Kubernetes API" in run.err
    assert "a private endpoint needs a tunnel (--api-server) or a machine inside the VPC" in run.err


def test_job_runs_off_the_gpu_nodes_locked_down_and_cleans_itself_up() -> None:
    job = job_manifest("pdstack-smoke-abc123", ServingEndpoints(), "m", "python:3.12-slim", 300)

    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 300 and spec["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"pdstack.io/pool": "system"}
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ROUTER_URL"] == "http://pdstack-router.pdstack.svc:8000"
    assert env["ROUTER_METRICS_URL"] == "http://pdstack-router.pdstack.svc:9090"
    assert env["DECODE_URL"] == "http://pdstack-decode-engines.pdstack.svc:8000"


def test_a_log_without_result_line_is_reported_with_its_tail() -> None:
    with pytest.raises(SmokeError, match="printed no result; its log ends:\nstarting\nImportError: boom"):
        parse_result("starting\nImportError: boom")


@pytest.mark.parametrize(
    ("model", "served"),
    [("llama-70b", ["llama-3.3-70b-instruct"]), (None, ["llama-3.1-8b-instruct", "llama-3.3-70b-instruct"])],
    ids=["one model", "every model"],
)
def test_smoke_of_several_models_runs_each_in_its_namespace_with_its_model(
    aws_env: MotoServer, tmp_path: Path, model: str | None, served: list[str]
) -> None:
    path = tmp_path / TWO_MODELS.name
    path.write_text(TWO_MODELS.read_text())
    Deployed(load(path)).everything()
    decode = FakeEngine(role="decode")
    router = FakeEngine(role="router", peer=decode)
    services = {}
    for namespace in ("pdstack-llama-8b", "pdstack-llama-70b"):
        endpoints = ServingEndpoints(namespace=namespace)
        services[endpoints.router_url] = services[endpoints.router_metrics_url] = "router"
        services[endpoints.decode_url] = "decode"
    with serving(router) as router_url, serving(decode) as decode_url:
        urls = {"router": router_url, "decode": decode_url}
        kube = FakeKubernetes(
            cluster="two-models",
            access_key="AKIATESTPDSTACK00001",
            services={url: urls[target] for url, target in services.items()},
        )
        with serving(kube) as kube_url:
            chosen = ["--model", model] if model else []
            run = run_cli("smoke", "--deployment", str(path), "--region", REGION, "--api-server", kube_url, *chosen)

    assert run.code == 0, run.out + run.err
    created = [line for line in run.out.splitlines() if line.startswith("created job ")]
    namespaces = ["pdstack-llama-8b", "pdstack-llama-70b"] if model is None else ["pdstack-llama-70b"]
    assert [line.split()[2].partition("/")[0] for line in created] == namespaces
    assert [r["model"] for r in router.requests] == served
    assert run.out.count("smoke passed") == len(served)
