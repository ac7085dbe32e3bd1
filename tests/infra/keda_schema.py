"""A pinned, closed JSON schema of the KEDA fields pdstack renders (keda.sh/v1alpha1 ScaledObject and
TriggerAuthentication, KEDA 2.20.2), written from the CRDs of the kedacore/charts chart keda 2.20.2
(keda/templates/crds/crd-scaledobjects.yaml, crd-triggerauthentications.yaml). Closed objects make a misspelt or
unknown field fail; enums and minimums are the CRD's.

To update with a new KEDA chart: read those two CRDs at the chart's tag and adjust the fields below, then the pin in
infra/cluster/addons.py.
"""

from __future__ import annotations

from typing import Any

_INT32_MIN0 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": properties}


_METADATA = {"type": "object", "required": ["name", "namespace"]}
# Kubernetes HPAScalingRules (autoscaling/v2), as the CRD embeds them; the API server's own limits on top:
# stabilizationWindowSeconds 0..3600, periodSeconds 1..1800, value > 0.
_SCALING_RULES = _closed(
    {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": _closed(
                {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
                ("type", "value", "periodSeconds"),
            ),
        },
    }
)

SCALED_OBJECT_V1ALPHA1: dict[str, Any] = _closed(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": _closed(
            {
                "scaleTargetRef": _closed(
                    {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                    ("name",),
                ),
                "minReplicaCount": _INT32_MIN0,
                "maxReplicaCount": _INT32_MIN0,
                "idleReplicaCount": _INT32_MIN0,
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": _INT32_MIN0,
                "initialCooldownPeriod": _INT32_MIN0,
                "fallback": _closed(
                    {
                        "failureThreshold": _INT32_MIN0,
                        "replicas": _INT32_MIN0,
                        "behavior": {
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                                "scalingModifiers",
                            ]
                        },
                    },
                    ("failureThreshold", "replicas"),
                ),
                "advanced": _closed(
                    {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": _closed(
                            {
                                "name": {"type": "string"},
                                "behavior": _closed({"scaleUp": _SCALING_RULES, "scaleDown": _SCALING_RULES}),
                            }
                        ),
                    }
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            # metadata is a map of strings in the CRD (additionalProperties: string)
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": _closed(
                                {
                                    "name": {"type": "string"},
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                                ("name",),
                            ),
                        },
                        ("type", "metadata"),
                    ),
                },
            },
            ("scaleTargetRef", "triggers"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

TRIGGER_AUTHENTICATION_V1ALPHA1: dict[str, Any] = _closed(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": _closed(
            {
                "podIdentity": _closed(
                    {
                        "provider": {"enum": ["azure-workload", "gcp", "aws", "aws-eks", "none"]},
                        "roleArn": {"type": "string"},
                        "identityOwner": {"enum": ["keda", "workload"]},
                    },
                    ("provider",),
                ),
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

# What KEDA 2.20.2's prometheus scaler reads from trigger metadata (pkg/scalers/prometheus_scaler.go, the keda:""
# tags of prometheusMetadata): required ones, and every name it knows (any other key is ignored silently there, so
# a test holds ours to this list).
PROMETHEUS_METADATA_REQUIRED = ("serverAddress", "query", "threshold")
PROMETHEUS_METADATA_KNOWN = frozenset(
    {
        "serverAddress",
        "query",
        "queryParameters",
        "threshold",
        "activationThreshold",
        "namespace",
        "customHeaders",
        "ignoreNullValues",
        "unsafeSsl",
        "awsRegion",
        "timeout",
        "identityOwner",
    }
)
