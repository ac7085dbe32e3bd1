"""Loopback servers for the operations tests: moto (AWS), recorded AWS answers, a Kubernetes API, a router.

Every server binds 127.0.0.1 on a free port, and every one is stopped by the fixture that started it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testbed.ports import free_ports
from testbed.process import HttpServer

RECORDINGS = Path(__file__).parent / "recordings"


# --- moto in server mode --------------------------------------------------------------------------------------------


@dataclass
class MotoServer:
    url: str

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def reset(self) -> None:
        self.post("/moto-api/reset", b"")

    def enforce_iam(self, free_calls: float) -> None:
        """Moto checks IAM policies after ``free_calls`` more requests (inf: never)."""
        self.post("/moto-api/reset-auth", str(free_calls).encode())


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode under the test bed's supervisor (up to ~30 s to start on a slow CI machine)."""
    (port,) = free_ports(1)
    with (
        tempfile.TemporaryDirectory(prefix="moto-") as work,
        HttpServer(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            dict(os.environ),
            port,
            Path(work) / "moto.log",
            Path(work),
            ready_path="/moto-api/",
            start_timeout_s=30.0,
            poll_s=0.1,
            stop_grace_s=10.0,
        ) as server,
    ):
        yield MotoServer(url=server.url)


# --- a generic JSON HTTP server ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _JsonServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.app.handle(self.command, self.path, dict(self.headers), body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _serve


class _JsonServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app.handle(method, path, headers, body) -> (status, headers, bytes)`` on loopback; yield its URL."""
    server = _JsonServer(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _json(status: int, body: Any, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(extra or {})}, json.dumps(body).encode()


# --- recorded AWS answers -------------------------------------------------------------------------------------------


@dataclass
class RecordedAws:
    """Answers AWS API calls moto does not model from recordings (JSON written from the AWS API reference).

    A recording maps a call to a list of answers: ``"POST AmazonSageMaker.ListClusterNodes"`` for JSON-protocol
    services (by X-Amz-Target) or ``"GET /clusters/pdstack/node-groups"`` for REST services. Each request takes the
    next answer; the last one repeats. Each answer is ``{"status": 200, "body": {...}}``.
    """

    routes: dict[str, list[dict[str, Any]]]
    calls: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, *names: str) -> RecordedAws:
        routes: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            routes.update(json.loads((RECORDINGS / name).read_text())["routes"])
        return cls(routes=routes)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        target = headers.get("X-Amz-Target")
        key = f"{method} {target}" if target else f"{method} {urllib.parse.urlsplit(path).path}"
        if method == "POST" and not target and body.startswith(b"Action="):  # query protocol (STS)
            key = "POST " + urllib.parse.parse_qs(body.decode())["Action"][0]
        self.calls.append(key)
        answers = self.routes.get(key)
        if not answers:
            return _json(404, {"__type": "NotRecorded", "message": f"no recording for {key}"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if "xml" in answer:
            return answer.get("status", 200), {"Content-Type": "text/xml"}, answer["xml"].encode()
        content_type = "application/x-amz-json-1.1" if target else "application/json"
        return answer.get("status", 200), {"Content-Type": content_type}, json.dumps(answer["body"]).encode()


# --- a Kubernetes API server that runs Jobs as local processes -------------------------------------------------------


@dataclass
class FakeKubernetes:
    """Speaks the few Kubernetes calls the operations make, checking each carries an EKS token for ``cluster``.

    A created Job runs like a kubelet would run it: its container command as a local process with the Job's
    environment, Service URLs rewritten to the loopback servers in ``services``; its output is the pod log.
    """

    cluster: str
    access_key: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)
    refuse: bool = False
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    tokens_checked: int = 0

    def _token_problem(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer k8s-aws-v1."):
            return "no EKS bearer token"
        encoded = auth.removeprefix("Bearer k8s-aws-v1.")
        url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        if query.get("Action") != ["GetCallerIdentity"] or "x-k8s-aws-id" not in query["X-Amz-SignedHeaders"][0]:
            return f"not a presigned GetCallerIdentity naming the cluster: {url}"
        if (
            not query["X-Amz-Credential"][0].startswith(self.access_key + "/")
            or "/sts/" not in query["X-Amz-Credential"][0]
        ):
            return "signed with other credentials"
        if query.get("X-Amz-Expires") != ["60"]:
            return "token lifetime is not 60 s"
        self.tokens_checked += 1
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        problem = self._token_problem(headers)
        if problem:
            return _json(401, {"kind": "Status", "message": f"Unauthorized: {problem}"})
        if self.refuse:
            return _json(
                403,
                {
                    "kind": "Status",
                    "message": 'User "arn:aws:sts::123456789012:user/moto" cannot '
                    'create resource "jobs" in API group "batch"',
                },
            )
        parts = urllib.parse.urlsplit(path)
        segments = parts.path.strip("/").split("/")
        query = urllib.parse.parse_qs(parts.query)
        if method == "GET" and parts.path == "/api/v1/nodes":
            wanted = query.get("labelSelector", [""])[0]
            items = [n for n in self.nodes if wanted in n["metadata"].get("labels", {})]
            return _json(200, {"kind": "NodeList", "items": items})
        if segments[:3] == ["apis", "batch", "v1"] and segments[5:6] == ["jobs"]:
            namespace = segments[4]
            if method == "POST":
                job = json.loads(body)
                self.jobs[job["metadata"]["name"]] = job
                self._run(job)
                return _json(201, job)
            name = segments[6]
            if name not in self.jobs:
                return _json(404, {"kind": "Status", "message": f'jobs "{name}" not found'})
            if method == "DELETE":
                self.deleted.append(f"{namespace}/{name}?{parts.query}")
                del self.jobs[name]
                return _json(200, {"kind": "Status", "status": "Success"})
            return _json(200, {**self.jobs[name], "status": {"succeeded": 1}})
        if segments[:2] == ["api", "v1"] and segments[4:5] == ["pods"]:
            if len(segments) == 7 and segments[6] == "log":
                return 200, {"Content-Type": "text/plain"}, self.logs[segments[5]].encode()
            job = query.get("labelSelector", [""])[0].removeprefix("job-name=")
            pods = [{"metadata": {"name": f"{job}-pod"}}] if job in self.jobs else []
            return _json(200, {"kind": "PodList", "items": pods})
        return _json(404, {"kind": "Status", "message": f"not served: {method} {path}"})

    def _run(self, job: dict[str, Any]) -> None:
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        for service_url, local_url in self.services.items():
            env = {k: v.replace(service_url, local_url) for k, v in env.items()}
        env["SETTLE_SECONDS"] = "0"
        command = [sys.executable, *container["command"][1:]]
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        self.logs[f"{job['metadata']['name']}-pod"] = done.stdout + done.stderr


# --- a router and a decode engine that count like the real ones ------------------------------------------------------


@dataclass
class FakeEngine:
    """``/ready``, ``/v1/completions`` and Prometheus ``/metrics`` from prometheus-client's real exposition."""

    role: str  # "router" or "decode"
    answer: str = " the KV cache of the prompt."
    peer: FakeEngine | None = None  # the decode engine a disaggregating router hands the request to
    disaggregate: bool = True
    transfers: bool = True

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "pdstack_router_decisions", "P/D or decode-only, and why", ["decision", "reason"], registry=self.registry
        )
        self.xfer = Histogram("vllm:nixl_xfer_time_seconds", "NIXL transfer time", ["engine"], registry=self.registry)
        self.requests: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        from prometheus_client import generate_latest

        if path == "/ready":
            return _json(200, {"ready": True})
        if path == "/metrics":
            return 200, {"Content-Type": "text/plain; version=0.0.4"}, generate_latest(self.registry)
        if path == "/v1/completions" and method == "POST":
            self.requests.append(json.loads(body))
            self.decisions.labels(decision="pd" if self.disaggregate else "decode_only", reason="smoke").inc()
            if self.disaggregate and self.peer is not None and self.peer.transfers:
                self.peer.xfer.labels(engine="0").observe(0.004)
            return _json(200, {"object": "text_completion", "choices": [{"index": 0, "text": self.answer}]})
        return _json(404, {"error": path})
