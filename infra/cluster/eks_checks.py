"""EksClusterChecks: what cdk-nag's EKS1/EKS2 would catch, for ``aws_eks_v2`` clusters that those rules never see.

A synth error (so ``cdk synth`` fails) when a cluster's API endpoint is public without CIDR limits, or when any
control-plane log type is off.
"""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from aws_cdk import aws_eks_v2 as eks
from constructs import IConstruct

REQUIRED_LOG_TYPES = frozenset({"api", "audit", "authenticator", "controllerManager", "scheduler"})
OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0"})


@jsii.implements(cdk.IAspect)
class EksClusterChecks:
    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, eks.CfnCluster):
            return
        for problem in cluster_problems(node):
            cdk.Annotations.of(node).add_error(f"[pdstack-EKS] {problem}")


def cluster_problems(cluster: eks.CfnCluster) -> list[str]:
    """The findings for one synthesized cluster resource."""
    stack = cdk.Stack.of(cluster)
    vpc = stack.resolve(cluster.resources_vpc_config)
    problems = []
    public = vpc.get("endpointPublicAccess", True)
    cidrs = set(vpc.get("publicAccessCidrs") or ["0.0.0.0/0"])
    if public and cidrs & OPEN_CIDRS:
        problems.append(
            "the cluster API endpoint is public to the whole internet; restrict it to named CIDRs or make it private"
        )
    logging = stack.resolve(cluster.logging) or {}
    enabled = {entry["type"] for entry in (logging.get("clusterLogging", {}).get("enabledTypes") or [])}
    missing = sorted(REQUIRED_LOG_TYPES - enabled)
    if missing:
        problems.append(f"control-plane logging is off for: {', '.join(missing)}")
    return problems
