"""The checks of a GPU pool's instance type and node labels, shared by the deployment schema (infra/config: EKS node
groups and HyperPod instance groups) and the serving schema (runtime/config.py: each role's instance type).

Here, not in ``infra``, because ``runtime`` may not import ``infra`` (runtime/catalog.py says why). Each check
returns the value it accepts, or raises ``ValueError`` whose message pydantic puts after the field's name.
"""

from __future__ import annotations

import re

from runtime.catalog import INSTANCE_CATALOG

# A Kubernetes label key: an optional DNS-subdomain prefix and a slash, then a name of at most 63 characters.
_K8S_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def catalog_instance_type(name: str) -> str:
    """An instance type of the catalog."""
    if name not in INSTANCE_CATALOG:
        raise ValueError(f"unknown instance type {name!r}; known types: {', '.join(sorted(INSTANCE_CATALOG))}")
    return name


def hyperpod_instance_type(name: str) -> str:
    """An instance type of the catalog that HyperPod offers (it has an ``ml.*`` name)."""
    spec = INSTANCE_CATALOG.get(name)
    if spec is None or spec.hyperpod_name is None:
        offered = sorted(n for n, s in INSTANCE_CATALOG.items() if s.hyperpod_name)
        raise ValueError(f"{name!r} is not an instance type pdstack runs on HyperPod; known: {', '.join(offered)}")
    return name


def label_keys(labels: dict[str, str]) -> dict[str, str]:
    """Node labels whose every key is a valid Kubernetes label key."""
    for key in labels:
        if not _K8S_LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key (prefix/name, 63 characters)")
    return labels
