"""The cluster stack's outputs, the same for a cluster pdstack creates (InferenceCluster) and one it imports
(ImportedCluster): the operations commands read them by the names in infra/stack_outputs.py."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from infra.stack_outputs import ClusterOutputs


def add_cluster_outputs(scope: Construct, cluster: eks.ICluster, efa_security_group: ec2.ISecurityGroup) -> None:
    cdk.CfnOutput(scope, ClusterOutputs.CLUSTER_NAME, value=cluster.cluster_name)
    cdk.CfnOutput(scope, ClusterOutputs.CLUSTER_ARN, value=cluster.cluster_arn)
    cdk.CfnOutput(scope, ClusterOutputs.EFA_SECURITY_GROUP_ID, value=efa_security_group.security_group_id)
    cdk.CfnOutput(
        scope,
        ClusterOutputs.UPDATE_KUBECONFIG,
        value=f"aws eks update-kubeconfig --name {cluster.cluster_name} --region {cdk.Stack.of(scope).region}",
    )
