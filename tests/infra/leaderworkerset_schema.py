"""A pinned, closed JSON schema of the LeaderWorkerSet fields pdstack renders (leaderworkerset.x-k8s.io/v1, LWS
v0.10.0), written from the LWS API reference. The pod templates inside are checked separately against the
Kubernetes PodTemplateSpec schema. Closed objects (additionalProperties: false) make a misspelt field fail.

To update with a new LWS release: compare with its CRD (config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml
in kubernetes-sigs/lws at the release tag) and adjust the enums and fields below.
"""

from __future__ import annotations

from typing import Any

_INT_OR_PERCENT = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+%$"}]}

LEADER_WORKER_SET_V1: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "leaderworkerset.x-k8s.io/v1"},
        "kind": {"const": "LeaderWorkerSet"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["leaderWorkerTemplate"],
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
                "rolloutStrategy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["RollingUpdate"]},
                        "rollingUpdateConfiguration": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "maxUnavailable": _INT_OR_PERCENT,
                                "maxSurge": _INT_OR_PERCENT,
                                "partition": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
                "networkConfig": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}},
                },
                "leaderWorkerTemplate": {
                    "type": "object",
                    "required": ["workerTemplate"],
                    "additionalProperties": False,
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "restartPolicy": {"enum": ["RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"]},
                        "leaderTemplate": {"type": "object"},
                        "workerTemplate": {"type": "object"},
                    },
                },
            },
        },
    },
}

# The LeaderWorkerSet CRD's scale subresource (LWS v0.10.0, config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets
# .yaml): what an HPA (KEDA's ScaledObject) scales is .spec.replicas, the number of groups, never pods inside a group.
LWS_SCALE_SUBRESOURCE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.hpaPodSelector",
}
