"""GpuNodeGroup: one EKS managed node group of EFA GPU instances, in the GPU subnet, from an EfaLaunchTemplate."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from infra.config import CapacityBlock, GpuNodeGroupConfig
from infra.gpu_capacity.efa import EfaLaunchTemplate, EfaLaunchTemplateProps
from infra.workload_names import GPU_NODE_LABELS, NODE_GROUP_LABEL, accelerator_label
from runtime.catalog import instance_spec

# The exact CloudFormation value. aws-cdk-lib's enum carries "AL2023_X86_64_NVIDIA" (cfn-lint rejects that case),
# and CDK's GPU-instance list lacks p5/p5en, so passing ami_type fails validation and omitting it silently picks an
# image without NVIDIA drivers. The instance type lives in the launch template; the AMI type is set here, verbatim.
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"

_TAINT_EFFECTS = {
    "NoSchedule": eks.TaintEffect.NO_SCHEDULE,
    "PreferNoSchedule": eks.TaintEffect.PREFER_NO_SCHEDULE,
    "NoExecute": eks.TaintEffect.NO_EXECUTE,
}


def gpu_node_labels(group: GpuNodeGroupConfig) -> dict[str, str]:
    """What EKS puts on each node of the group at kubelet start (the Cluster Autoscaler's node template mirrors it)."""
    return {
        **group.labels,
        **GPU_NODE_LABELS,
        **accelerator_label(instance_spec(group.instance_type).gpu_model),
        NODE_GROUP_LABEL: group.name,
    }


@dataclass(frozen=True)
class GpuNodeGroupProps:
    cluster: eks.ICluster
    group: GpuNodeGroupConfig
    gpu_subnet: ec2.ISubnet
    efa_security_group: ec2.ISecurityGroup
    hugepages_2mi_pages: int  # the workers' hugepages, reserved on each node at boot


class GpuNodeGroup(Construct):
    """Exposes ``nodegroup`` and ``launch_template`` (an ``EfaLaunchTemplate``)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: GpuNodeGroupProps) -> None:
        super().__init__(scope, construct_id)
        group = props.group
        self.launch_template = EfaLaunchTemplate(
            self,
            "LaunchTemplate",
            props=EfaLaunchTemplateProps(
                group=group,
                cluster_security_group_id=props.cluster.cluster_security_group_id,
                efa_security_group_id=props.efa_security_group.security_group_id,
                hugepages_2mi_pages=props.hugepages_2mi_pages,
            ),
        )
        template = self.launch_template.launch_template
        self.nodegroup = eks.Nodegroup(
            self,
            "Nodes",
            cluster=props.cluster,
            launch_template_spec=eks.LaunchTemplateSpec(id=template.ref, version=template.attr_latest_version_number),
            subnets=ec2.SubnetSelection(subnets=[props.gpu_subnet]),
            capacity_type=eks.CapacityType.CAPACITY_BLOCK
            if isinstance(group.capacity, CapacityBlock)
            else eks.CapacityType.ON_DEMAND,
            min_size=group.min_size,
            desired_size=group.desired_size,
            max_size=group.max_size,
            labels=gpu_node_labels(group),
            taints=[eks.TaintSpec(key=t.key, value=t.value, effect=_TAINT_EFFECTS[t.effect]) for t in group.taints],
            # GPU nodes are replaced one at a time: a serving replica must not lose all its peers at once.
            max_unavailable=1,
            enable_node_auto_repair=True,
        )
        self.nodegroup.node.default_child.add_property_override("AmiType", GPU_AMI_TYPE)  # type: ignore[union-attr]
        if isinstance(group.capacity, CapacityBlock):
            # A block holds exactly its instances: the default update launches a replacement before it terminates
            # the old node and waits for capacity the block does not have. MINIMAL terminates first (EKS API
            # NodegroupUpdateConfig.updateStrategy: "useful ... with hardware accelerators such as GPUs").
            self.nodegroup.node.default_child.add_property_override(  # type: ignore[union-attr]
                "UpdateConfig.UpdateStrategy", "MINIMAL"
            )
