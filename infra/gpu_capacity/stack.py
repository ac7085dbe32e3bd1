"""GpuCapacityStack: the EFA GPU node groups, in a stack of their own.

GPU capacity is what most often fails (InsufficientInstanceCapacity on p5, a capacity block not yet active). In
the cluster stack, one such failure rolled back the whole stack, the EKS cluster included. Here it rolls back only
the node groups; the cluster, its add-ons and the system nodes stay, and a retry is one `cdk deploy` of this stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct, IDependable

from infra.cluster.system_placement import system_placement_for
from infra.config import GpuNodeGroupConfig
from infra.config.cluster import AddonSource
from infra.gpu_capacity.gpu_nodes import GpuNodeGroup, GpuNodeGroupProps
from infra.gpu_capacity.gpu_zone.check import GpuZoneCheck
from infra.gpu_capacity.node_autoscaler import NodeAutoscaler, NodeAutoscalerProps


@dataclass(frozen=True)
class GpuCapacityProps:
    cluster: eks.ICluster
    groups: list[GpuNodeGroupConfig]
    gpu_subnet: ec2.ISubnet
    efa_security_group: ec2.ISecurityGroup
    # the cluster's prerequisites (InferenceCluster/ImportedCluster.prerequisites): the node groups and the Cluster
    # Autoscaler wait for them (on pdstack's cluster the vpc-cni efa-only interfaces need and the system nodes; on an
    # existing one its check)
    prerequisites: Sequence[IDependable]
    hugepages_2mi_pages: dict[str, int]  # by instance type: what one GPU node reserves for the workers
    kubernetes_version: str  # the cluster's minor: picks the Cluster Autoscaler's
    gpu_az_id: str | None  # network.gpu_az_id: checked at deploy time before any node group is created
    # the system nodes' nodeSelector and tolerations (Deployment.system_placement); None: the cluster construct's
    system_placement: dict | None = None
    # cluster.addons.node_autoscaler: "platform" runs its own Cluster Autoscaler (pdstack still tags the groups)
    node_autoscaler: AddonSource = "pdstack"


class GpuNodeGroupCapacity(Construct):
    """Exposes ``gpu_node_groups`` (by configured name), ``zone_check`` (the GPU zone check every node group waits
    for; None without network.gpu_az_id) and ``node_autoscaler`` (the Cluster Autoscaler over them,
    None without groups). The autoscaler lives with the groups it tags and resizes: it is deployed and rolled back
    with them."""

    def __init__(self, scope: Construct, construct_id: str, *, props: GpuCapacityProps) -> None:
        super().__init__(scope, construct_id)
        self.gpu_node_groups: dict[str, GpuNodeGroup] = {}
        self.zone_check: GpuZoneCheck | None = None
        if props.gpu_az_id is not None:
            self.zone_check = GpuZoneCheck(
                self,
                "GpuZoneCheck",
                subnet=props.gpu_subnet,
                az_id=props.gpu_az_id,
                instance_types=[g.instance_type for g in props.groups],
            )
        for group in props.groups:
            node_group = GpuNodeGroup(
                self,
                f"Gpu-{group.name}",
                props=GpuNodeGroupProps(
                    cluster=props.cluster,
                    group=group,
                    gpu_subnet=props.gpu_subnet,
                    efa_security_group=props.efa_security_group,
                    hugepages_2mi_pages=props.hugepages_2mi_pages.get(group.instance_type, 0),
                ),
            )
            node_group.nodegroup.node.add_dependency(*props.prerequisites)
            if self.zone_check is not None:
                node_group.nodegroup.node.add_dependency(self.zone_check.resource)
            self.gpu_node_groups[group.name] = node_group

        self.node_autoscaler: NodeAutoscaler | None = None
        if props.groups:
            self.node_autoscaler = NodeAutoscaler(
                self,
                "NodeAutoscaler",
                props=NodeAutoscalerProps(
                    cluster=props.cluster,
                    hugepages_2mi_pages=props.hugepages_2mi_pages,
                    kubernetes_version=props.kubernetes_version,
                    groups={g.name: (g, self.gpu_node_groups[g.name].nodegroup) for g in props.groups},
                    system_placement=system_placement_for(
                        props.cluster, props.system_placement, "GpuCapacityProps.system_placement"
                    ),
                    install=props.node_autoscaler == "pdstack",
                ),
            )
            # its Pod Identity association and its chart act on the cluster
            self.node_autoscaler.node.add_dependency(*props.prerequisites)


class GpuCapacityStack(cdk.Stack):
    """The GpuNodeGroupCapacity construct in a stack of its own (pdstack's app), as ``capacity``; id "Default" keeps
    the logical ids the stack gave its resources when it built them itself."""

    def __init__(self, scope: Construct, construct_id: str, *, props: GpuCapacityProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.capacity = capacity = GpuNodeGroupCapacity(self, "Default", props=props)
        self.gpu_node_groups, self.zone_check = capacity.gpu_node_groups, capacity.zone_check
        self.node_autoscaler = capacity.node_autoscaler
