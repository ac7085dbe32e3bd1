"""The Kubernetes objects pdstack renders for a deployment (with a fixed image reference), and the parts of them the
checks read."""

from __future__ import annotations

from typing import Any

from infra.config import Deployment
from infra.workloads.stack import serving_objects

IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving:0123456789abcdef0123"


def objects_of(deployment: Deployment) -> list[dict[str, Any]]:
    return serving_objects(deployment, IMAGE)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    template = spec["template"] if "template" in spec else spec["leaderWorkerTemplate"]["workerTemplate"]
    (c,) = template["spec"]["containers"]
    return c


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    return (spec["template"] if "template" in spec else spec["leaderWorkerTemplate"]["workerTemplate"])["spec"]
