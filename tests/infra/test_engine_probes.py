"""The engines' probes tolerate a busy engine: vLLM answers /health on the event loop a heavy batch holds, so the
1 s Kubernetes default took Ready engines out of their EndpointSlice under load (issue 19, defect 14)."""

from __future__ import annotations

import pytest

from infra.workloads.stack import serving_objects
from runtime.router.contract import ROLE_LABEL
from tests.support.synthesis import SHIPPED, Synthesized


def _engine_containers(synth: Synthesized) -> list[dict]:
    containers = []
    for obj in serving_objects(synth.deployment, "image"):
        labels = obj.get("metadata", {}).get("labels", {})
        if obj["kind"] in ("Deployment", "LeaderWorkerSet") and ROLE_LABEL in labels:
            templates = (
                [obj["spec"]["template"]]
                if obj["kind"] == "Deployment"
                else [
                    t
                    for t in (
                        obj["spec"]["leaderWorkerTemplate"].get("leaderTemplate"),
                        obj["spec"]["leaderWorkerTemplate"]["workerTemplate"],
                    )
                    if t
                ]
            )
            containers += [c for t in templates for c in t["spec"]["containers"]]
    return containers


@pytest.mark.parametrize("fixture", sorted(SHIPPED))
def test_engine_probes_wait_longer_than_the_default_second(request: pytest.FixtureRequest, fixture: str) -> None:
    containers = _engine_containers(request.getfixturevalue(fixture))
    assert containers
    for container in containers:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            assert probe.get("timeoutSeconds", 1) > 1, (container["name"], kind)
            assert probe["timeoutSeconds"] <= probe["periodSeconds"], (container["name"], kind)
