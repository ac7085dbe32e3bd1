"""``smoke``: one completion through the deployed router, sent from inside the cluster by a short-lived Job.

The Job runs a few lines of Python (standard library only) next to the router: it reads the router's and the decode
engine's Prometheus counters, sends ``/v1/completions``, reads the counters again and prints one result line. From
the counter deltas we tell whether the router disaggregated the request and whether decode pulled the KV over NIXL
(instead of recomputing the prompt). The Job is deleted afterwards, whatever happened; ``ttlSecondsAfterFinished``
removes it even if this process dies first.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from infra.operations.kube_client import KubeClient
from infra.operations.serving_endpoints import (
    DECODE_KV_TRANSFERS,
    ROUTER_DISAGGREGATED_LABEL,
    ROUTER_PD_DECISIONS,
    SMOKE_POD_LABELS,
    ServingEndpoints,
)
from infra.workload_names import SYSTEM_PLACEMENT

# Small, public, reachable through the VPC's NAT; pin by digest for production use (--image).
SMOKE_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
RESULT_MARKER = "PDSTACK-SMOKE "
# Long enough that a length-threshold router sends it through prefill/decode.
PROMPT = (
    "Disaggregated serving splits inference in two: a prefill worker reads the whole prompt and builds its "
    "KV cache, then a decode worker pulls that cache over the network and generates the answer. "
    * 8
    + "In one short sentence, what does the decode worker pull from the prefill worker?"
)

# Runs inside the cluster with the standard library only. Configuration comes from the environment.
JOB_SCRIPT = r"""
import json, os, time, urllib.request
router, decode = os.environ["ROUTER_URL"], os.environ["DECODE_URL"]
router_metrics = os.environ["ROUTER_METRICS_URL"]
def fetch(url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()
def counter(url, name, label):
    try:
        text = fetch(url + "/metrics")[1]
    except Exception:
        return None
    total = 0.0  # readable metrics without the sample: nothing counted yet
    for line in text.splitlines():
        if line.startswith(name) and (not label or label in line) and not line.startswith(name + "_"):
            total += float(line.rsplit(" ", 1)[1])
    return total
result = {"router_ready": False}
try:
    result["router_ready"] = fetch(router + "/ready")[0] == 200
except Exception as exc:
    result["error"] = "router /ready: %s" % exc
before = (counter(router_metrics, os.environ["ROUTER_METRIC"], os.environ["ROUTER_LABEL"]),
          counter(decode, os.environ["DECODE_METRIC"], ""))
started = time.monotonic()
try:
    status, body = fetch(router + "/v1/completions", {"model": os.environ["MODEL"], "prompt": os.environ["PROMPT"],
                                                      "max_tokens": 32, "temperature": 0}, timeout=120)
    result["status"] = status
    result["answer"] = json.loads(body)["choices"][0]["text"]
except Exception as exc:
    result["error"] = "router /v1/completions: %s" % exc
result["seconds"] = round(time.monotonic() - started, 3)
time.sleep(float(os.environ.get("SETTLE_SECONDS", "2")))  # counters are updated after the response
after = (counter(router_metrics, os.environ["ROUTER_METRIC"], os.environ["ROUTER_LABEL"]),
         counter(decode, os.environ["DECODE_METRIC"], ""))
result["router_disaggregated"] = [before[0], after[0]]
result["decode_kv_transfers"] = [before[1], after[1]]
print("PDSTACK-SMOKE " + json.dumps(result), flush=True)
"""


class SmokeResult(BaseModel):
    """The Job's result line (external input: it comes back through the pod log)."""

    model_config = ConfigDict(extra="ignore")

    router_ready: bool
    status: int | None = None
    answer: str | None = None
    error: str | None = None
    seconds: float | None = None
    router_disaggregated: tuple[float | None, float | None] = (None, None)
    decode_kv_transfers: tuple[float | None, float | None] = (None, None)

    @staticmethod
    def _delta(pair: tuple[float | None, float | None]) -> float | None:
        before, after = pair
        if after is None:
            return None
        return after - (before or 0.0)

    @property
    def disaggregated(self) -> bool | None:
        delta = self._delta(self.router_disaggregated)
        return None if delta is None else delta >= 1

    @property
    def kv_pulled(self) -> bool | None:
        delta = self._delta(self.decode_kv_transfers)
        return None if delta is None else delta >= 1

    @property
    def passed(self) -> bool:
        """Answered, and when the router says it disaggregated, decode really pulled the KV."""
        if self.answer is None or self.error:
            return False
        return not (self.disaggregated and self.kv_pulled is False)


class SmokeError(Exception):
    """The smoke Job could not run or produced no result; the message says what happened."""


def job_manifest(
    name: str,
    endpoints: ServingEndpoints,
    model: str,
    image: str,
    deadline_seconds: int,
    placement: dict[str, Any] = SYSTEM_PLACEMENT,
) -> dict[str, Any]:
    """The smoke Job; ``placement``: the system nodes' nodeSelector and tolerations (Deployment.system_placement)."""
    labels = dict(SMOKE_POD_LABELS)
    env = {
        "ROUTER_URL": endpoints.router_url,
        "ROUTER_METRICS_URL": endpoints.router_metrics_url,
        "DECODE_URL": endpoints.decode_url,
        "MODEL": model,
        "PROMPT": PROMPT,
        "ROUTER_METRIC": ROUTER_PD_DECISIONS,
        "ROUTER_LABEL": ROUTER_DISAGGREGATED_LABEL,
        "DECODE_METRIC": DECODE_KV_TRANSFERS,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": endpoints.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    **placement,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "smoke",
                            "image": image,
                            "command": ["python3", "-c", JOB_SCRIPT],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def parse_result(log: str) -> SmokeResult:
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return SmokeResult.model_validate_json(line.removeprefix(RESULT_MARKER))
            except ValidationError as exc:
                raise SmokeError(f"the smoke Job printed a result this version cannot read: {exc}") from None
    tail = "\n".join(log.splitlines()[-5:]) or "(empty log)"
    raise SmokeError(f"the smoke Job printed no result; its log ends:\n{tail}")


class SmokeRun:
    """Creates the Job, waits for it (bounded), reads its log, deletes it."""

    def __init__(
        self,
        kube: KubeClient,
        endpoints: ServingEndpoints,
        model: str,
        image: str = SMOKE_IMAGE,
        timeout: float = 300.0,
        placement: dict[str, Any] = SYSTEM_PLACEMENT,
        interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = print,
    ) -> None:
        self.kube, self.endpoints, self.model, self.image = kube, endpoints, model, image
        self.timeout, self.interval, self.sleep, self.say = timeout, interval, sleep, say
        self.placement = placement
        self.name = f"pdstack-smoke-{secrets.token_hex(3)}"

    def run(self) -> SmokeResult:
        ns = self.endpoints.namespace
        manifest = job_manifest(self.name, self.endpoints, self.model, self.image, int(self.timeout), self.placement)
        self.kube.create_job(ns, manifest)
        self.say(f"created job {ns}/{self.name} (image {self.image})")
        try:
            self._wait_for_job()
            pods = self.kube.job_pods(ns, self.name)
            if not pods:
                raise SmokeError(f"job {ns}/{self.name} finished but has no pod to read")
            return parse_result(self.kube.pod_log(ns, pods[0]["metadata"]["name"]))
        finally:
            self.kube.delete_job(ns, self.name)
            self.say(f"deleted job {ns}/{self.name}")

    def _wait_for_job(self) -> None:
        polls = int(self.timeout / max(self.interval, 1e-3)) + 1
        for _ in range(polls):
            status = self.kube.read_job(self.endpoints.namespace, self.name).get("status", {})
            if status.get("succeeded") or status.get("failed"):
                return
            self.sleep(self.interval)
        raise SmokeError(
            f"job {self.endpoints.namespace}/{self.name} did not finish within {int(self.timeout)}s "
            "(image pull? no schedulable system node?)"
        )


def render(result: SmokeResult) -> str:
    def yes_no(value: bool | None, pair: tuple[float | None, float | None], metric: str) -> str:
        if value is None:
            return f"unknown ({metric}: /metrics not readable)"
        before, after = pair
        return f"{'yes' if value else 'no'} ({metric} {before or 0:g} -> {after:g})"

    answer = repr(result.answer) if result.answer is not None else f"none ({result.error})"
    lines = [
        f"router ready: {'yes' if result.router_ready else 'no'}",
        f"answer: {answer}" + (f" in {result.seconds:g}s" if result.seconds is not None and result.answer else ""),
        "disaggregated: "
        + yes_no(
            result.disaggregated, result.router_disaggregated, f"{ROUTER_PD_DECISIONS}{{{ROUTER_DISAGGREGATED_LABEL}}}"
        ),
        "decode pulled the KV: " + yes_no(result.kv_pulled, result.decode_kv_transfers, DECODE_KV_TRANSFERS),
    ]
    if result.answer is not None and result.error:
        lines.append(f"error: {result.error}")
    if result.disaggregated and result.kv_pulled is False:
        lines.append("FAILED: the router disaggregated the request but decode transferred no KV (it recomputed)")
    lines.append("smoke passed" if result.passed else "smoke FAILED")
    return "\n".join(lines)


def result_as_json(result: SmokeResult) -> str:
    body = result.model_dump(mode="json")
    body.update(disaggregated=result.disaggregated, kv_pulled=result.kv_pulled, passed=result.passed)
    return json.dumps(body, indent=2)
