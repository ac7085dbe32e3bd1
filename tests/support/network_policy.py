"""NetworkPolicies evaluated the way Kubernetes does against the pods pdstack renders: a connection from a source to a
pod on a port is admitted when the pod is selected by no Ingress policy, or when one rule of one policy selecting it
names the source (pod labels or IP) and the port."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from infra.config import Deployment, parse_deployment
from infra.operations.serving_endpoints import ServingEndpoints
from infra.operations.smoke import SMOKE_IMAGE, job_manifest
from infra.workloads.stack import serving_objects
from tests.support.synthesis import load_yaml
from tests.support.workload_objects import IMAGE


@dataclass(frozen=True)
class Source:
    labels: dict[str, str] | None = None  # a pod of the serving namespace
    ip: str | None = None  # anything else, by address


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Labels of every pod template, by workload name (an LWS gives leader and worker)."""
    pods: dict[str, dict[str, str]] = {}
    for obj in objects:
        spec = obj.get("spec", {})
        if "template" in spec:
            pods[obj["metadata"]["name"]] = spec["template"]["metadata"]["labels"]
        elif "leaderWorkerTemplate" in spec:
            for part in ("leaderTemplate", "workerTemplate"):
                pods[f"{obj['metadata']['name']}/{part}"] = spec["leaderWorkerTemplate"][part]["metadata"]["labels"]
    return pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict[str, Any], source: Source) -> bool:
    assert set(peer) <= {"podSelector", "ipBlock"}, f"evaluator does not know {peer}"
    if "podSelector" in peer:
        return source.labels is not None and selects(peer["podSelector"], source.labels)
    block = peer["ipBlock"]
    if source.ip is None:
        return False
    address = ipaddress.ip_address(source.ip)
    return address in ipaddress.ip_network(block["cidr"]) and not any(
        address in ipaddress.ip_network(e) for e in block.get("except", [])
    )


def _port_matches(ports: list[dict[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == "TCP" and p["port"] <= port <= p.get("endPort", p["port"]) for p in ports)


def admitted(policies: list[dict[str, Any]], source: Source, target: dict[str, str], port: int) -> bool:
    selecting = [p for p in policies if "Ingress" in p["spec"]["policyTypes"] and selects_pod(p, target)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if (not peers or any(_peer_matches(peer, source) for peer in peers)) and _port_matches(
                rule.get("ports"), port
            ):
                return True
    return False


def selects_pod(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    return selector == {} or selects(selector, labels)


def smoke_job(deployment: Deployment) -> dict[str, Any]:
    """The Job ``python -m infra smoke`` creates in the serving namespace."""
    endpoints = ServingEndpoints(
        namespace=deployment.workloads.namespace,
        router_port=deployment.serving.router.port,
        decode_port=deployment.serving.decode.ports.http,
    )
    return job_manifest("pdstack-smoke-test", endpoints, "model", SMOKE_IMAGE, 300)


def rendered(deployment: Deployment) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The policies, and the labels of every pod in the namespace: the serving pods and the smoke Job's."""
    objects = serving_objects(deployment, IMAGE)
    return [o for o in objects if o["kind"] == "NetworkPolicy"], pod_templates([*objects, smoke_job(deployment)])


def with_router(**router: Any) -> Deployment:
    data = load_yaml("default.yaml")
    data["workloads"]["router"].update(router)
    return parse_deployment(data)
