"""What AWS says about a deployment: stacks, EKS cluster and node groups, HyperPod cluster and nodes, image, build.

Each response is read through a pydantic model (external input: only the fields we use, unknown ones ignored), so a
changed or surprising answer fails loudly here, not as a KeyError three functions later.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import botocore.exceptions
from pydantic import BaseModel, ConfigDict, Field

from infra.operations.aws_access import AwsAccess
from infra.workload_names import GPU_LABEL, NODE_GROUP_LABEL

_LIST_PAGES = 20  # bounded pagination: 20 pages of 100 nodes is far beyond any deployment we make


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


# --- CloudFormation -----------------------------------------------------------------------------------------------


class StackOutput(_Answer):
    key: str = Field(alias="OutputKey")
    value: str = Field(alias="OutputValue")


class Stack(_Answer):
    name: str = Field(alias="StackName")
    status: str = Field(alias="StackStatus")
    reason: str | None = Field(default=None, alias="StackStatusReason")
    outputs_list: list[StackOutput] = Field(default_factory=list, alias="Outputs")

    @property
    def outputs(self) -> dict[str, str]:
        return {o.key: o.value for o in self.outputs_list}


def read_stack(aws: AwsAccess, name: str) -> Stack | None:
    """The stack, or None when no stack of that name exists in the region (deleted stacks do not count)."""
    try:
        with aws.calling("cloudformation"):
            answer = aws.client("cloudformation").describe_stacks(StackName=name)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    return Stack.model_validate(answer["Stacks"][0])


# --- EKS ----------------------------------------------------------------------------------------------------------


class VpcConfig(_Answer):
    public: bool = Field(default=False, alias="endpointPublicAccess")
    private: bool = Field(default=True, alias="endpointPrivateAccess")
    public_cidrs: list[str] = Field(default_factory=list, alias="publicAccessCidrs")


class EksCluster(_Answer):
    name: str
    status: str
    version: str | None = None
    endpoint: str | None = None
    vpc: VpcConfig = Field(default_factory=VpcConfig, alias="resourcesVpcConfig")
    certificate_authority: dict[str, str] = Field(default_factory=dict, alias="certificateAuthority")

    @property
    def endpoint_access(self) -> str:
        if self.vpc.public and self.vpc.private:
            return "public-and-private"
        return "public" if self.vpc.public else "private"

    @property
    def ca_data(self) -> str | None:
        return self.certificate_authority.get("data")


class HealthIssue(_Answer):
    code: str
    message: str = ""
    resource_ids: list[str] = Field(default_factory=list, alias="resourceIds")


class NodeGroupHealth(_Answer):
    issues: list[HealthIssue] = Field(default_factory=list)


class ScalingConfig(_Answer):
    min_size: int = Field(default=0, alias="minSize")
    desired_size: int = Field(default=0, alias="desiredSize")
    max_size: int = Field(default=0, alias="maxSize")


class NodeGroup(_Answer):
    name: str = Field(alias="nodegroupName")
    status: str
    capacity_type: str | None = Field(default=None, alias="capacityType")
    scaling: ScalingConfig = Field(default_factory=ScalingConfig, alias="scalingConfig")
    labels: dict[str, str] = Field(default_factory=dict)
    health: NodeGroupHealth = Field(default_factory=NodeGroupHealth)

    @property
    def pdstack_name(self) -> str | None:
        """The deployment's name for a GPU node group (CDK generates the EKS name)."""
        return self.labels.get(NODE_GROUP_LABEL)

    @property
    def is_gpu(self) -> bool:
        return self.labels.get(GPU_LABEL) == "true"


def read_eks_cluster(aws: AwsAccess, name: str) -> EksCluster | None:
    try:
        with aws.calling("eks"):
            answer = aws.client("eks").describe_cluster(name=name)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return EksCluster.model_validate(answer["cluster"])


def read_node_groups(aws: AwsAccess, cluster: str) -> list[NodeGroup]:
    eks = aws.client("eks")
    names: list[str] = []
    token: dict[str, str] = {}
    with aws.calling("eks"):
        for _ in range(_LIST_PAGES):
            page = eks.list_nodegroups(clusterName=cluster, **token)
            names += page.get("nodegroups", [])
            if not page.get("nextToken"):
                break
            token = {"nextToken": page["nextToken"]}
        return [
            NodeGroup.model_validate(eks.describe_nodegroup(clusterName=cluster, nodegroupName=n)["nodegroup"])
            for n in sorted(names)
        ]


# --- SageMaker HyperPod -------------------------------------------------------------------------------------------


class InstanceStatus(_Answer):
    status: str = Field(alias="Status")
    message: str | None = Field(default=None, alias="Message")


class HyperPodNode(_Answer):
    instance_id: str = Field(alias="InstanceId")
    group: str = Field(alias="InstanceGroupName")
    instance_type: str | None = Field(default=None, alias="InstanceType")
    instance_status: InstanceStatus = Field(alias="InstanceStatus")


class HyperPodGroup(_Answer):
    name: str = Field(alias="InstanceGroupName")
    current: int = Field(default=0, alias="CurrentCount")
    target: int = Field(default=0, alias="TargetCount")


class HyperPodCluster(_Answer):
    name: str = Field(alias="ClusterName")
    status: str = Field(alias="ClusterStatus")
    failure: str | None = Field(default=None, alias="FailureMessage")
    provisioning: str | None = Field(default=None, alias="NodeProvisioningMode")  # "Continuous" or absent
    groups: list[HyperPodGroup] = Field(default_factory=list, alias="InstanceGroups")
    nodes: list[HyperPodNode] = Field(default_factory=list)


def read_hyperpod(aws: AwsAccess, name: str) -> HyperPodCluster | None:
    """DescribeCluster + ListClusterNodes (boto3's sagemaker client; see docs/after-deploy.md for why not the SDK)."""
    sagemaker = aws.client("sagemaker")
    try:
        with aws.calling("sagemaker"):
            answer = sagemaker.describe_cluster(ClusterName=name)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            return None
        raise
    nodes: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    with aws.calling("sagemaker"):
        for _ in range(_LIST_PAGES):
            page = sagemaker.list_cluster_nodes(ClusterName=name, MaxResults=100, **token)
            nodes += page.get("ClusterNodeSummaries", [])
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
    return HyperPodCluster.model_validate({**answer, "nodes": nodes})


class ClusterEvent(_Answer):
    """One ListClusterEvents summary (continuous provisioning reports capacity and lifecycle failures only here)."""

    id: str = Field(alias="EventId")
    time: datetime = Field(alias="EventTime")
    level: str = Field(alias="EventLevel")
    resource_type: str = Field(alias="ResourceType")
    description: str = Field(default="", alias="Description")
    group: str | None = Field(default=None, alias="InstanceGroupName")
    instance_id: str | None = Field(default=None, alias="InstanceId")


class EventFailure(_Answer):
    """What DescribeClusterEvent adds to a summary: the FailureMessage of its Cluster, InstanceGroup,
    InstanceGroupScaling or Instance metadata (e.g. "We currently do not have sufficient capacity ...")."""

    message: str | None = None

    @classmethod
    def of(cls, detail: dict[str, Any]) -> EventFailure:
        metadata = detail.get("EventDetails", {}).get("EventMetadata", {})
        messages = [part.get("FailureMessage") for part in metadata.values() if isinstance(part, dict)]
        return cls(message=next((m for m in messages if m), None))


_EVENT_PAGES = 3  # the newest 300 events: well past the failures of a group that is still short of its target
PROBLEM_LEVELS = ("Error", "Warn")


def read_cluster_events(aws: AwsAccess, name: str, group: str, limit: int) -> list[tuple[ClusterEvent, EventFailure]]:
    """The newest Warn and Error events of one instance group (instance events included), newest first, at most
    ``limit``, each with its failure message from DescribeClusterEvent."""
    sagemaker = aws.client("sagemaker")
    found: list[ClusterEvent] = []
    token: dict[str, str] = {}
    with aws.calling("sagemaker"):
        for _ in range(_EVENT_PAGES):
            page = sagemaker.list_cluster_events(
                ClusterName=name,
                InstanceGroupName=group,
                SortBy="EventTime",
                SortOrder="Descending",
                MaxResults=100,
                **token,
            )
            events = [ClusterEvent.model_validate(e) for e in page.get("Events", [])]
            found += [e for e in events if e.level in PROBLEM_LEVELS]
            if len(found) >= limit or not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
        return [
            (
                event,
                EventFailure.of(sagemaker.describe_cluster_event(ClusterName=name, EventId=event.id)["EventDetails"]),
            )
            for event in found[:limit]
        ]


# --- ECR and CodeBuild --------------------------------------------------------------------------------------------

_IMAGE_URI = re.compile(r"^(?P<registry>\d{12})\.dkr\.ecr\.[a-z0-9-]+\.[a-z.]+/(?P<repo>[^:@]+):(?P<tag>[\w][\w.-]*)$")


class ImageScan(_Answer):
    status: str
    description: str | None = None
    severity_counts: dict[str, int] = Field(default_factory=dict)


class Image(_Answer):
    uri: str
    repository: str
    tag: str
    exists: bool
    digest: str | None = None
    pushed_at: datetime | None = None
    scan: ImageScan | None = None


def parse_image_uri(uri: str) -> tuple[str, str, str]:
    """(registry id, repository, tag) of an ECR image URI such as 1234...dkr.ecr.us-east-1.amazonaws.com/repo:tag."""
    match = _IMAGE_URI.match(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)")
    return match["registry"], match["repo"], match["tag"]


def read_image(aws: AwsAccess, uri: str) -> Image:
    registry, repository, tag = parse_image_uri(uri)
    ecr = aws.client("ecr")
    ident = {"registryId": registry, "repositoryName": repository}
    try:
        with aws.calling("ecr"):
            details = ecr.describe_images(**ident, imageIds=[{"imageTag": tag}])["imageDetails"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return Image(uri=uri, repository=repository, tag=tag, exists=False)
        raise
    detail = details[0]
    try:
        with aws.calling("ecr"):
            findings = ecr.describe_image_scan_findings(**ident, imageId={"imageTag": tag}, maxResults=1)
        scan = ImageScan(
            status=findings.get("imageScanStatus", {}).get("status", "UNKNOWN"),
            description=findings.get("imageScanStatus", {}).get("description"),
            severity_counts=findings.get("imageScanFindings", {}).get("findingSeverityCounts", {}),
        )
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ScanNotFoundException":
            raise
        scan = ImageScan(status="NOT_SCANNED", description="no scan of this image yet")
    return Image(
        uri=uri,
        repository=repository,
        tag=tag,
        exists=True,
        digest=detail.get("imageDigest"),
        pushed_at=detail.get("imagePushedAt"),
        scan=scan,
    )


class Build(_Answer):
    id: str
    status: str = Field(alias="buildStatus")
    phase: str | None = Field(default=None, alias="currentPhase")
    start: datetime | None = Field(default=None, alias="startTime")
    end: datetime | None = Field(default=None, alias="endTime")
    logs: dict[str, Any] = Field(default_factory=dict)

    @property
    def logs_link(self) -> str | None:
        return self.logs.get("deepLink")


def read_last_build(aws: AwsAccess, project: str) -> Build | None:
    codebuild = aws.client("codebuild")
    with aws.calling("codebuild"):
        ids = codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING").get("ids", [])
        if not ids:
            return None
        builds = codebuild.batch_get_builds(ids=ids[:1]).get("builds", [])
    return Build.model_validate(builds[0]) if builds else None
