"""Stack names and output keys: the stacks write them, the operations commands (status, wait, smoke) read them.

Both sides import these names; tests/infra/test_stack_outputs.py checks every key the operations read against the
outputs the synthesized stacks really emit, so renaming one side alone fails a test instead of breaking ``status``.
"""

from __future__ import annotations

# gpu-nodes (EKS managed node groups) and hyperpod are the two homes of the GPU nodes: a deployment has one.
STACK_PARTS = ("network", "image", "cluster", "gpu-nodes", "hyperpod", "workloads", "observability")


def stack_name(deployment_name: str, part: str) -> str:
    """The CloudFormation stack of one part of a deployment."""
    if part not in STACK_PARTS:
        raise ValueError(f"unknown stack part {part!r}; parts: {', '.join(STACK_PARTS)}")
    return f"{deployment_name}-{part}"


def stack_names(
    deployment_name: str, with_hyperpod: bool, with_observability: bool, with_network: bool = True
) -> list[str]:
    """The stacks of a deployment; no network stack for an existing VPC (network.existing)."""
    absent = {"gpu-nodes" if with_hyperpod else "hyperpod"} | (set() if with_observability else {"observability"})
    absent |= set() if with_network else {"network"}
    return [stack_name(deployment_name, part) for part in STACK_PARTS if part not in absent]


class ImageOutputs:
    REPOSITORY_URI = "RepositoryUri"
    IMAGE_URI = "ImageUri"
    BUILD_PROJECT = "ImageBuildProject"


class ClusterOutputs:
    CLUSTER_NAME = "ClusterName"
    CLUSTER_ARN = "ClusterArn"
    EFA_SECURITY_GROUP_ID = "EfaSecurityGroupId"
    UPDATE_KUBECONFIG = "UpdateKubeconfig"


class HyperPodOutputs:
    CLUSTER_NAME = "HyperPodClusterName"
    CLUSTER_ARN = "HyperPodClusterArn"
    LIFECYCLE_BUCKET = "LifecycleBucketName"


class ObservabilityOutputs:
    WORKSPACE_ARN = "WorkspaceArn"
    WORKSPACE_ID = "WorkspaceId"
    PROMETHEUS_ENDPOINT = "PrometheusEndpoint"
    QUERY_URL = "QueryUrl"
    SCRAPER_ROLE_ARN = "ScraperRoleArn"


class WorkloadsOutputs:
    NAMESPACE = "Namespace"
    ROUTER_SERVICE = "RouterService"


# What the operations commands read, by stack part: each must be an output that part's stack emits.
READ_BY_OPERATIONS = {
    "image": (ImageOutputs.IMAGE_URI, ImageOutputs.BUILD_PROJECT),
    "cluster": (ClusterOutputs.CLUSTER_NAME,),
    "hyperpod": (HyperPodOutputs.CLUSTER_NAME,),
}
