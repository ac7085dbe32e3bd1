"""The serving section as the pods read it (the ``pdstack-serving`` ConfigMap), and which part each pod reads.

A ConfigMap change does not restart a pod (Kubernetes ConfigMap docs; the Helm docs' ``checksum/config`` pattern):
each pod template carries a hash of exactly the part of the section its process reads, so a change rolls exactly
the pods that read it. What reads what, from runtime/:
- a worker (runtime/worker.py, runtime/preflight.py, runtime/model_fetch.py): ``model``, its own role (``prefill`` or
  ``decode``, except ``replicas``, which only the controller reads), ``kv_transfer`` and ``kv_events``;
- the router (runtime/router/server.py): ``model`` (served name, block size, tokenizer source), ``router``,
  ``kv_events``, and the engines' ``ports`` of both roles.
In the cluster, ``router.api_keys_path`` is rendered to the keys' mount when workloads.router.api_keys_secret is set.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from infra.workload_names import API_KEYS_MOUNT

if TYPE_CHECKING:
    from infra.config import Deployment

Reader = Literal["prefill", "decode", "router"]
# Fields of a role section that no pod reads: the controller's replica count.
_CONTROLLER_ONLY = ("replicas",)


def discovers_through_api(deployment: Deployment) -> bool:
    """In the cluster the router watches EndpointSlices through the API server (with its service-account token)
    unless the deployment chose static engines or DNS."""
    discovery = deployment.serving.router.discovery
    return not discovery.static and discovery.dns is None


def rendered_serving(deployment: Deployment) -> dict[str, Any]:
    """The serving section as the pods read it. In the cluster the router finds engines through EndpointSlices
    unless the file chose another discovery source."""
    serving = deployment.serving.model_dump(mode="json")
    discovery = serving["router"]["discovery"]
    if discovers_through_api(deployment) and discovery["kubernetes"] is None:
        discovery["kubernetes"] = {"namespace": deployment.workloads.namespace}
    if deployment.workloads.router.api_keys_secret is not None:  # the keys' mount (infra/workloads/router_objects.py)
        serving["router"]["api_keys_path"] = API_KEYS_MOUNT
    return serving


def read_by(serving: dict[str, Any], reader: Reader) -> dict[str, Any]:
    """The part of the rendered serving section the pods of ``reader`` read."""
    if reader == "router":
        return {
            "model": serving["model"],
            "router": serving["router"],
            "kv_events": serving["kv_events"],
            "ports": {role: serving[role]["ports"] for role in ("prefill", "decode")},
        }
    role = {k: v for k, v in serving[reader].items() if k not in _CONTROLLER_ONLY}
    return {
        "model": serving["model"],
        reader: role,
        "kv_transfer": serving["kv_transfer"],
        "kv_events": serving["kv_events"],
    }


def config_hash(deployment: Deployment, reader: Reader) -> str:
    """A digest of what ``reader``'s pods read: the value of their template's config-hash annotation."""
    text = json.dumps(read_by(rendered_serving(deployment), reader), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
