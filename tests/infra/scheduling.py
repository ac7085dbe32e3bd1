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
    return all(expression_matches(e, node.labels) for e in expressions) and all(
        expression_matches(f, {"metadata.name": node.name}) for f in fields
    )


def node_affinity_matches(spec: dict[str, Any], node: Node) -> bool:
    """nodeSelector AND the required node affinity (its terms ORed)."""
    if any(node.labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
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
    return [
        t for t in node.taints if t["effect"] in FILTERING_EFFECTS and not any(tolerates(tol, t) for tol in tolerations)
    ]


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


# --- resources: what the scheduler's NodeResourcesFit filter sums ---------------------------------------------------
# k8s.io/kubernetes pkg/scheduler/framework/plugins/noderesources/fit.go: a pod's request is the sum of its
# containers' requests, or its largest init container's where that is larger; it fits a node when every resource
# requested plus what the node's pods already request stays within the node's allocatable (and one more pod within
# its pods capacity). Quantities here: cpu in millicores, memory and hugepages in bytes, the rest in units.


def quantity(name: str, value: str) -> int:
    value = str(value)
    if name == "cpu":
        return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)
    return parse_quantity(value)


def pod_requests(spec: dict[str, Any]) -> dict[str, int]:
    def of(container: dict[str, Any]) -> dict[str, int]:
        resources = container.get("resources") or {}
        # a limit without a request defaults the request (the API server's defaulting)
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {k: quantity(k, v) for k, v in wanted.items()}

    total: dict[str, int] = {}
    for container in spec.get("containers", []):
        for name, amount in of(container).items():
            total[name] = total.get(name, 0) + amount
    for container in spec.get("initContainers", []):
        for name, amount in of(container).items():
            total[name] = max(total.get(name, 0), amount)
    return total


@dataclass
class Cluster:
    """Nodes with their allocatable resources (``Node.capacity``, plus "pods") and the pods bound to them."""

    nodes: list[Node]
    pods: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # node -> [(pod name, labels)]
    used: dict[str, dict[str, int]] = field(default_factory=dict)

    def free(self, node: Node) -> dict[str, int]:
        used = self.used.get(node.name, {})
        return {k: v - used.get(k, 0) for k, v in node.capacity.items()}

    def fits(self, spec: dict[str, Any], node: Node) -> list[str]:
        problems = placement_problems(spec, node)
        free = self.free(node)
        wanted = {**pod_requests(spec), "pods": 1}
        for resource, amount in wanted.items():
            if amount and free.get(resource, 0) < amount:
                problems.append(f"{resource}: wants {amount}, {node.name} has {free.get(resource, 0)} free")
        return problems

    def _spread_allows(self, spec: dict[str, Any], labels: dict[str, str], node: Node) -> bool:
        """PodTopologySpread (DoNotSchedule constraints; pkg/scheduler/framework/plugins/podtopologyspread): placing
        here may not leave the topology domain more than maxSkew above the least loaded eligible domain."""
        for constraint in spec.get("topologySpreadConstraints") or []:
            if constraint.get("whenUnsatisfiable") != "DoNotSchedule":
                continue
            key = constraint["topologyKey"]
            selector = constraint["labelSelector"]["matchLabels"]
            eligible = [
                n
                for n in self.nodes
                if key in n.labels and node_affinity_matches(spec, n) and not untolerated_taints(spec, n)
            ]
            counts: dict[str, int] = {}
            for n in eligible:
                matching = sum(1 for _, pod in self.pods.get(n.name, []) if selector.items() <= pod.items())
                counts[n.labels[key]] = counts.get(n.labels[key], 0) + matching
            if counts.get(node.labels.get(key, ""), 0) + 1 - min(counts.values(), default=0) > constraint["maxSkew"]:
                return False
        return True

    def place(self, name: str, spec: dict[str, Any], labels: dict[str, str]) -> Node | None:
        """Bind the pod to the first feasible node with the most free CPU (a stand-in for the scoring plugins:
        any feasible node would do for the question asked, whether a pod CAN run)."""
        feasible = [n for n in self.nodes if not self.fits(spec, n) and self._spread_allows(spec, labels, n)]
        if not feasible:
            return None
        node = max(feasible, key=lambda n: self.free(n).get("cpu", 0))
        self.pods.setdefault(node.name, []).append((name, labels))
        used = self.used.setdefault(node.name, {})
        for resource, amount in {**pod_requests(spec), "pods": 1}.items():
            used[resource] = used.get(resource, 0) + amount
        return node

    def remove(self, name: str, spec: dict[str, Any], node: Node) -> None:
        pods = self.pods[node.name]
        pods.remove(next(p for p in pods if p[0] == name))
        for resource, amount in {**pod_requests(spec), "pods": 1}.items():
            self.used[node.name][resource] -= amount


def roll(
    cluster: Cluster,
    name: str,
    spec: dict[str, Any],
    labels: dict[str, str],
    replicas: int,
    max_surge: int,
    max_unavailable: int,
    group: int = 1,
) -> list[str]:
    """A rolling update as the Deployment controller (or, with ``group`` pods per replica, LeaderWorkerSet's) runs
    it: new replicas while the total stays within replicas + maxSurge, old ones removed while the available stay at
    least replicas - maxUnavailable (a new replica counts once all its pods are bound). The running replicas are
    placed first. Returns what stalled it (empty: the rollout finishes)."""
    old: list[list[tuple[str, Node]]] = []
    for index in range(replicas):
        members = []
        for member in range(group):
            node = cluster.place(f"{name}-old-{index}-{member}", spec, labels)
            if node is None:
                return [f"{name}: replica {index} does not fit before the rollout"]
            members.append((f"{name}-old-{index}-{member}", node))
        old.append(members)
    new = 0
    while old or new < replicas:
        progressed = False
        while new < replicas and len(old) + new < replicas + max_surge:
            bound: list[tuple[str, Node]] = []
            for member in range(group):
                node = cluster.place(f"{name}-new-{new}-{member}", spec, labels)
                if node is None:
                    for pod, at in bound:
                        cluster.remove(pod, spec, at)
                    bound = []
                    break
                bound.append((f"{name}-new-{new}-{member}", node))
            if not bound:
                break
            new += 1
            progressed = True
        while old and len(old) - 1 + new >= replicas - max_unavailable:
            for pod, node in old.pop():
                cluster.remove(pod, spec, node)
            progressed = True
        if not progressed:
            return [
                (
                    f"{name}: stalled with {len(old)} old and {new} new replicas (maxSurge {max_surge}, "
                    f"maxUnavailable {max_unavailable}): {[cluster.fits(spec, n) for n in cluster.nodes]}"
                )
            ]
    return []
