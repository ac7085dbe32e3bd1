"""The kube-scheduler's node feasibility rules for one pod and one node, and Helm's merge of values, for the tests.

Written after the Kubernetes sources (v1.34):
- nodeSelector and required node affinity: k8s.io/component-helpers/scheduling/corev1/nodeaffinity/nodeaffinity.go
  (``GetRequiredNodeAffinity``: the nodeSelector AND the affinity; nodeSelectorTerms ORed, an empty term list or an
  empty term matches nothing; the expressions of a term ANDed) and
  k8s.io/apimachinery/pkg/labels/selector.go (In, NotIn (true when the label is absent), Exists, DoesNotExist,
  Gt/Lt: both sides parsed as integers, false when either does not parse);
- taints and tolerations: k8s.io/api/core/v1/toleration.go ``ToleratesTaint`` (empty effect matches every effect,
  empty key with Exists matches every key, operator Exists ignores the value, Equal or empty compares it) and the
  TaintToleration plugin's filter, which considers only NoSchedule and NoExecute taints;
- Helm's values merge: helm.sh/helm/v3/pkg/chartutil/coalesce.go (maps merge key by key, any other value, lists
  included, replaces the default; null deletes the key).

The DaemonSet controller's automatic tolerations (node.kubernetes.io/not-ready and the like) concern node conditions,
not the taints pdstack configures, and are left out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

FILTERING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Node:
    """A node as the scheduler sees it: labels, taints and the extended resources its plugins offer."""

    name: str
    labels: dict[str, str]
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, int] = field(default_factory=dict)


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def expression_matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        have, want = _int(labels[key]), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    raise ValueError(f"unknown node selector operator {operator!r}")


def term_matches(term: dict[str, Any], node: Node) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term selects no node
    return (all(expression_matches(e, node.labels) for e in expressions)
            and all(expression_matches(f, {"metadata.name": node.name}) for f in fields))


def node_affinity_matches(spec: dict[str, Any], node: Node) -> bool:
    """nodeSelector AND the required node affinity (its terms ORed)."""
    if any(node.labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def tolerates(toleration: dict[str, Any], taint: dict[str, str]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint["effect"]:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint["key"]:
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taints(spec: dict[str, Any], node: Node) -> list[dict[str, str]]:
    tolerations = spec.get("tolerations") or []
    return [t for t in node.taints
            if t["effect"] in FILTERING_EFFECTS and not any(tolerates(tol, t) for tol in tolerations)]


def placement_problems(spec: dict[str, Any], node: Node) -> list[str]:
    """Why the pod cannot run on the node (empty: it can, as far as labels and taints go)."""
    problems = []
    if not node_affinity_matches(spec, node):
        problems.append(f"node affinity/nodeSelector do not match the labels of {node.name}")
    for taint in untolerated_taints(spec, node):
        problems.append(f"taint {taint['key']}={taint.get('value', '')}:{taint['effect']} of {node.name} not tolerated")
    return problems


def can_place(spec: dict[str, Any], node: Node) -> bool:
    return not placement_problems(spec, node)


def extended_requests(spec: dict[str, Any]) -> dict[str, int]:
    """Extended resources and hugepages the pod's containers request, summed (as the scheduler's fit check does).
    Hugepages in bytes, the rest in units."""
    total: dict[str, int] = {}
    for container in spec.get("containers", []):
        for name, quantity in (container.get("resources", {}).get("limits") or {}).items():
            if "/" in name or name.startswith("hugepages-"):
                total[name] = total.get(name, 0) + parse_quantity(str(quantity))
    return total


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(quantity: str) -> int:
    for suffix, factor in _BINARY.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def coalesce(defaults: Any, values: Any) -> Any:
    """Helm's merge of user values over a chart's defaults."""
    if not isinstance(defaults, dict) or not isinstance(values, dict):
        return copy.deepcopy(values)
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
