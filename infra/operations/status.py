"""``status``: read a deployed environment and say, per part, whether it is ready and, if not, what and where.

Every part becomes a ``Check`` in one of three states: ``ready``; ``pending`` (AWS is still working on it, or it can
still come right by itself, e.g. GPU capacity not yet granted); ``failed`` (it will not become ready without someone
acting). ``wait`` polls the same checks and stops early on ``failed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

import botocore.exceptions
from pydantic import BaseModel, ConfigDict, Field

from infra.config import Deployment
from infra.operations import aws_facts as facts
from infra.operations.aws_access import AccessError, AwsAccess
from infra.operations.kube_client import (
    BadApiServer,
    KubeClient,
    KubeError,
    KubeRefused,
    KubeUnreachable,
    node_is_ready,
)
from infra.stack_outputs import ClusterOutputs, HyperPodOutputs, ImageOutputs, stack_names

State = Literal["ready", "pending", "failed"]

_STACK_READY = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}
_EKS_PENDING = {"CREATING", "UPDATING", "PENDING"}
_NODEGROUP_PENDING = {"CREATING", "UPDATING", "DEGRADED"}  # DEGRADED: e.g. capacity not granted yet; EKS keeps trying
_HYPERPOD_PENDING = {"Creating", "Updating", "SystemUpdating"}
_NODE_PENDING = {"Pending", "DeepHealthCheckInProgress", "SystemUpdating"}
_BUILD_FAILED = {"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}
_EVENTS_READ = 6  # the newest Warn/Error events of a short instance group, described one by one (one call each)
_EVENTS_SHOWN = 3  # distinct failures shown per group
_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")


class Check(BaseModel):
    """One part of the environment: what it is, its state, a one-line summary and the problems found."""

    model_config = ConfigDict(frozen=True)

    area: str
    name: str
    state: State
    summary: str
    problems: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.area} {self.name}"


class EnvironmentStatus(BaseModel):
    deployment: str
    account: str
    region: str
    checks: list[Check]
    notes: list[str] = Field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.state == "ready" for c in self.checks)

    @property
    def not_ready(self) -> list[Check]:
        return [c for c in self.checks if c.state != "ready"]


KubeFactory = Callable[[facts.EksCluster], KubeClient | None]


class StatusReader:
    """Reads every fact of one deployment into checks. ``kube`` gives a client when the API server may be reached."""

    def __init__(self, deployment: Deployment, source: str, aws: AwsAccess, kube: KubeFactory) -> None:
        self.deployment = deployment
        self.source = source
        self.aws = aws
        self.kube = kube

    def read(self) -> EnvironmentStatus:
        d = self.deployment
        names = stack_names(
            d.name,
            with_hyperpod=d.hyperpod is not None,
            with_observability=d.observability.enabled,
            with_network=d.network.existing is None,
        )
        stacks = {name: facts.read_stack(self.aws, name) for name in names}
        if not any(stacks.values()):
            raise AccessError(
                f"not deployed: no stack of {d.name!r} in account {self.aws.account}, region {self.aws.region} "
                f"(looked for {', '.join(names)}); deploy with `npx cdk deploy --all -c deployment={self.source}` "
                "or check --region"
            )
        checks = [self._stack_check(name, stack) for name, stack in stacks.items()]
        notes: list[str] = []
        by_part = {name.removeprefix(f"{d.name}-"): stack for name, stack in stacks.items()}

        cluster_stack = by_part.get("cluster")
        if cluster_stack is not None and ClusterOutputs.CLUSTER_NAME in cluster_stack.outputs:
            checks += self._cluster_checks(cluster_stack.outputs[ClusterOutputs.CLUSTER_NAME], notes)
        image_stack = by_part.get("image")
        if image_stack is not None:
            checks += self._image_checks(image_stack.outputs)
        hyperpod_stack = by_part.get("hyperpod")
        if d.hyperpod is not None:
            name = hyperpod_stack.outputs.get(HyperPodOutputs.CLUSTER_NAME) if hyperpod_stack else None
            if name:
                checks += self._hyperpod_checks(name, notes)
        return EnvironmentStatus(
            deployment=d.name, account=self.aws.account, region=self.aws.region, checks=checks, notes=notes
        )

    # --- stacks -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _stack_check(name: str, stack: facts.Stack | None) -> Check:
        if stack is None:
            return Check(area="stack", name=name, state="pending", summary="not deployed yet")
        problems = [stack.reason] if stack.reason and stack.status not in _STACK_READY else []
        if stack.status in _STACK_READY:
            state: State = "ready"
        elif stack.status.endswith("_IN_PROGRESS"):
            state = "pending"
        else:  # *_FAILED, ROLLBACK_COMPLETE, DELETE_COMPLETE: someone has to act
            state = "failed"
        summary = stack.status + (
            " (the last update was rolled back)" if stack.status == "UPDATE_ROLLBACK_COMPLETE" else ""
        )
        return Check(area="stack", name=name, state=state, summary=summary, problems=problems)

    # --- EKS --------------------------------------------------------------------------------------------------------

    def _cluster_checks(self, name: str, notes: list[str]) -> list[Check]:
        cluster = facts.read_eks_cluster(self.aws, name)
        if cluster is None:
            return [
                Check(area="eks", name=name, state="failed", summary="the stack names it but EKS has no such cluster")
            ]
        state: State = (
            "ready" if cluster.status == "ACTIVE" else "pending" if cluster.status in _EKS_PENDING else "failed"
        )
        checks = [
            Check(
                area="eks",
                name=name,
                state=state,
                summary=f"{cluster.status}, Kubernetes {cluster.version}, endpoint {cluster.endpoint_access}",
            )
        ]
        ready_nodes = self._ready_nodes_by_group(cluster, notes) if cluster.status == "ACTIVE" else None
        groups = facts.read_node_groups(self.aws, name)
        if self.deployment.cluster.existing is not None:
            # An existing cluster's other node groups are the platform's: reported by it, not by pdstack.
            platform = [g.name for g in groups if not g.pdstack_name]
            if platform:
                notes.append(f"{len(platform)} node group(s) of the platform not checked: {', '.join(platform)}")
            groups = [g for g in groups if g.pdstack_name]
        checks += [self._node_group_check(g, ready_nodes) for g in groups]
        present = {g.pdstack_name for g in groups}
        checks += [
            Check(area="nodegroup", name=wanted.name, state="pending", summary="not created yet")
            for wanted in self.deployment.gpu_node_groups
            if wanted.name not in present
        ]
        return checks

    def _ready_nodes_by_group(self, cluster: facts.EksCluster, notes: list[str]) -> dict[str, int] | None:
        """Ready Kubernetes nodes per EKS node group, or None (with a note saying why) when the API is out of reach."""
        try:
            client = self.kube(cluster)
        except BadApiServer as exc:
            notes.append(f"node readiness not checked: {exc}")
            return None
        if client is None:
            notes.append(
                "node readiness not checked: the EKS API endpoint is private; pass --api-server with a tunnel "
                "(e.g. http://127.0.0.1:8001 from `kubectl proxy`) to count Ready nodes"
            )
            return None
        try:
            nodes = client.list_nodes("eks.amazonaws.com/nodegroup")
        except KubeRefused as exc:
            notes.append(
                f"node readiness not checked: the Kubernetes API refused {self.aws.arn} ({exc}); "
                "add it to cluster.admin_principal_arns"
            )
            return None
        except (KubeUnreachable, KubeError) as exc:
            notes.append(f"node readiness not checked: {exc}")
            return None
        counts: dict[str, int] = {}
        for node in nodes:
            group = node.get("metadata", {}).get("labels", {}).get("eks.amazonaws.com/nodegroup")
            if group and node_is_ready(node):
                counts[group] = counts.get(group, 0) + 1
        return counts

    @staticmethod
    def _node_group_check(group: facts.NodeGroup, ready_nodes: dict[str, int] | None) -> Check:
        desired = group.scaling.desired_size
        ready = None if ready_nodes is None else ready_nodes.get(group.name, 0)
        problems = [
            f"{i.code}: {i.message}" + (f" ({', '.join(i.resource_ids)})" if i.resource_ids else "")
            for i in group.health.issues
        ]
        if group.status == "ACTIVE" and not problems and (ready is None or ready >= desired):
            state: State = "ready"
        elif group.status in _NODEGROUP_PENDING or group.status == "ACTIVE":
            state = "pending"
        else:
            state = "failed"
        if ready is not None and ready < desired:
            problems.append(f"{ready} of {desired} nodes Ready in Kubernetes")
        kind = "GPU" if group.is_gpu else "system"
        label = f"{group.pdstack_name} ({group.name})" if group.pdstack_name else group.name
        counts = f"desired {desired}" + ("" if ready is None else f", ready {ready}")
        return Check(
            area="nodegroup",
            name=label,
            state=state,
            summary=f"{group.status}, {kind}, {group.capacity_type or '-'}, {counts}",
            problems=problems,
        )

    # --- HyperPod ---------------------------------------------------------------------------------------------------

    def _hyperpod_checks(self, name: str, notes: list[str]) -> list[Check]:
        cluster = facts.read_hyperpod(self.aws, name)
        if cluster is None:
            return [
                Check(
                    area="hyperpod",
                    name=name,
                    state="failed",
                    summary="the stack names it but SageMaker has no such cluster",
                )
            ]
        running = [n for n in cluster.nodes if n.instance_status.status == "Running"]
        expected = sum(g.count for g in self.deployment.hyperpod.instance_groups) if self.deployment.hyperpod else 0
        if cluster.status == "InService":
            state: State = "ready" if len(running) >= expected else "pending"
        else:
            state = "pending" if cluster.status in _HYPERPOD_PENDING else "failed"
        problems = [cluster.failure] if cluster.failure else []
        checks = [
            Check(
                area="hyperpod",
                name=name,
                state=state,
                summary=f"{cluster.status}, {len(running)} of {expected} nodes Running",
                problems=problems,
            )
        ]
        if cluster.provisioning == "Continuous":  # otherwise a failed scale-up fails the cluster, with its message
            checks += [
                self._short_group_check(name, group, notes) for group in cluster.groups if group.current < group.target
            ]
        recovers = self.deployment.hyperpod is not None and self.deployment.hyperpod.node_recovery == "Automatic"
        for node in cluster.nodes:
            status = node.instance_status.status
            if status == "Running":
                node_state: State = "ready"
            elif status in _NODE_PENDING or recovers:  # with automatic recovery a failed node is replaced
                node_state = "pending"
            else:
                node_state = "failed"
            message = node.instance_status.message
            checks.append(
                Check(
                    area="hyperpod-node",
                    name=f"{node.instance_id} ({node.group})",
                    state=node_state,
                    summary=status + (" (automatic recovery replaces it)" if status == "Failure" and recovers else ""),
                    problems=[message] if message and status != "Running" else [],
                )
            )
        return checks

    def _short_group_check(self, cluster: str, group: facts.HyperPodGroup, notes: list[str]) -> Check:
        """An instance group below its target. With continuous provisioning HyperPod keeps trying and says why it
        could not (no capacity, a failed lifecycle script) only in its cluster events: the newest distinct ones."""
        problems: list[str] = []
        try:
            events = facts.read_cluster_events(self.aws, cluster, group.name, limit=_EVENTS_READ)
        except (AccessError, botocore.exceptions.ClientError) as exc:
            notes.append(f"HyperPod events of instance group {group.name} not read: {exc}")
            events = []
        seen: set[str] = set()
        for event, failure in events:
            what = event.description + (f": {failure.message}" if failure.message else "")
            if what not in seen and len(problems) < _EVENTS_SHOWN:
                seen.add(what)
                problems.append(f"{event.time:%Y-%m-%d %H:%M} {event.level}: {what}")
        return Check(
            area="hyperpod-group",
            name=group.name,
            state="pending",
            summary=f"{group.current} of {group.target} instances; HyperPod keeps provisioning",
            problems=problems,
        )

    # --- image and build --------------------------------------------------------------------------------------------

    def _image_checks(self, outputs: dict[str, str]) -> list[Check]:
        checks: list[Check] = []
        build = None
        project = outputs.get(ImageOutputs.BUILD_PROJECT)
        if project:
            build = facts.read_last_build(self.aws, project)
            checks.append(self._build_check(project, build))
        uri = outputs.get(ImageOutputs.IMAGE_URI)
        if uri:
            try:
                image = facts.read_image(self.aws, uri)
            except ValueError as exc:
                return [*checks, Check(area="image", name=uri, state="failed", summary=str(exc))]
            checks.insert(0, self._image_check(image, build))
        return checks

    @staticmethod
    def _image_check(image: facts.Image, build: facts.Build | None) -> Check:
        name = f"{image.repository}:{image.tag}"
        if not image.exists:
            building = build is not None and build.status == "IN_PROGRESS"
            return Check(
                area="image",
                name=name,
                state="pending" if building else "failed",
                summary="not in ECR yet (the build is running)" if building else "not in ECR",
                problems=[]
                if building
                else ["the workloads reference an image tag that was never pushed or was deleted"],
            )
        scan = image.scan
        findings = ""
        if scan is not None:
            counts = ", ".join(f"{s} {scan.severity_counts[s]}" for s in _SEVERITIES if scan.severity_counts.get(s))
            findings = f", scan {scan.status}" + (
                f": {counts}" if counts else (": no findings" if scan.status == "COMPLETE" else "")
            )
        pushed = f"pushed {image.pushed_at:%Y-%m-%d %H:%M}" if image.pushed_at else "present"
        return Check(area="image", name=name, state="ready", summary=pushed + findings)

    @staticmethod
    def _build_check(project: str, build: facts.Build | None) -> Check:
        if build is None:
            return Check(area="build", name=project, state="pending", summary="no build yet")
        if build.status == "SUCCEEDED":
            state: State = "ready"
        elif build.status in _BUILD_FAILED:
            state = "failed"
        else:
            state = "pending"
        phase = f" in {build.phase}" if build.phase and build.status == "IN_PROGRESS" else ""
        problems = [f"logs: {build.logs_link}"] if state == "failed" and build.logs_link else []
        return Check(
            area="build", name=project, state=state, summary=f"last build {build.status}{phase}", problems=problems
        )


# --- rendering ------------------------------------------------------------------------------------------------------

_STATE_WORDS = {"ready": "ready", "pending": "not ready", "failed": "FAILED"}


def render_table(status: EnvironmentStatus) -> str:
    rows = [("AREA", "NAME", "STATE", "DETAIL")] + [
        (c.area, c.name, _STATE_WORDS[c.state], c.summary) for c in status.checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{status.deployment}: account {status.account}, region {status.region}", ""]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if index:
            check = status.checks[index - 1]
            lines += [" " * (widths[0] + 2) + f"! {p}" for p in check.problems]
    lines.append("")
    lines += [f"note: {n}" for n in status.notes]
    lines.append(verdict(status))
    return "\n".join(lines)


def verdict(status: EnvironmentStatus) -> str:
    if status.ready:
        return "ready: every part of the deployment is up"
    parts = "; ".join(f"{c.key} ({c.summary})" for c in status.not_ready)
    return f"not ready: {parts}"


def render_json(status: EnvironmentStatus) -> str:
    body = status.model_dump(mode="json")
    body["ready"] = status.ready
    return json.dumps(body, indent=2)
