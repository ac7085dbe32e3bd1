"""A pinned, closed JSON schema of the SecretProviderClass pdstack renders (secrets-store.csi.x-k8s.io/v1), written
from the CRD the pinned driver chart installs: kubernetes-sigs/secrets-store-csi-driver tag v1.6.0 (commit 0aad886f),
charts/secrets-store-csi-driver/crds/secrets-store.csi.x-k8s.io_secretproviderclasses.yaml (spec.parameters a map of
strings, spec.provider a string, spec.secretObjects the Kubernetes Secrets to sync, which pdstack does not use).
The API server prunes unknown fields of a structural CRD silently; closed objects here make a misspelt field fail.
"""

from __future__ import annotations

from typing import Any

SECRET_PROVIDER_CLASS_V1: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "secrets-store.csi.x-k8s.io/v1"},
        "kind": {"const": "SecretProviderClass"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["provider", "parameters"],
            "additionalProperties": False,
            "properties": {
                "provider": {"type": "string"},
                "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}
