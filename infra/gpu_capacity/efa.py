"""EFA networking for GPU nodes: the self-referencing EFA security group and the EFA launch template.

The launch template is an L1 on purpose: EC2's multi-card EFA layout (network card index, device index, efa-only
interfaces) is not expressible through the L2 ``LaunchTemplate``. Layout for an instance with N network cards:

- card 0, device 0: the primary ENA interface (``interface``; EKS needs it for node and pod IPs), with the cluster
  security group and the EFA security group;
- card 0, device 1: ``efa-only`` so card 0 carries EFA too;
- cards 1..N-1, device 0: ``efa-only``. efa-only interfaces take no subnet IPs (VPC CNI >= 1.18.5 required).

No SubnetId in the template (EKS rejects it; the node group's subnets place the instances).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import CapacityBlock, CapacityReservation, GpuNodeGroupConfig
from runtime.catalog import InstanceSpec, instance_spec

# The user data EKS merges into the managed node group's: a nodeadm NodeConfig that puts containerd and kubelet state
# (images, emptyDirs such as the model cache) onto the instance-store NVMe as RAID0, not the root EBS volume; and a
# script that reserves the 2 MiB hugepages the worker pods request. Nothing on the AL2023 NVIDIA AMI reserves them
# (awslabs/amazon-eks-ami at 81fec2e: no nr_hugepages in templates/al2023 or nodeadm), and the kubelet reports
# hugepages-2Mi capacity from what the kernel holds when it starts. The script runs from cloud-init's final stage,
# before the kubelet: templates/al2023/runtime/rootfs/etc/systemd/system/nodeadm-run.service orders nodeadm-run (which
# starts the kubelet) After=cloud-final.service.
_NODEADM_LOCAL_NVME = """--PDSTACK
Content-Type: application/node.eks.aws

---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  instance:
    localStorage:
      strategy: RAID0
"""
_HUGEPAGES_SCRIPT = """--PDSTACK
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
set -euo pipefail
echo "vm.nr_hugepages = {pages}" > /etc/sysctl.d/90-pdstack-hugepages.conf
sysctl -w vm.nr_hugepages={pages}
"""


def node_user_data(hugepages_2mi_pages: int) -> str:
    """The MIME multi-part user data of a GPU launch template."""
    parts = [_NODEADM_LOCAL_NVME]
    if hugepages_2mi_pages > 0:
        parts.append(_HUGEPAGES_SCRIPT.format(pages=hugepages_2mi_pages))
    return (
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="PDSTACK"\n\n'
        + "\n".join(parts)
        + "\n--PDSTACK--\n"
    )


def efa_network_interfaces(
    spec: InstanceSpec, *, primary_groups: list[str], efa_groups: list[str]
) -> list[dict[str, Any]]:
    """The launch template's NetworkInterfaces for ``spec``: one EFA per network card, primary ENA on card 0."""
    interfaces: list[dict[str, Any]] = [
        {
            "NetworkCardIndex": 0,
            "DeviceIndex": 0,
            "InterfaceType": "interface",
            "Groups": primary_groups,
            "DeleteOnTermination": True,
        },
        {
            "NetworkCardIndex": 0,
            "DeviceIndex": 1,
            "InterfaceType": "efa-only",
            "Groups": efa_groups,
            "DeleteOnTermination": True,
        },
    ]
    interfaces += [
        {
            "NetworkCardIndex": card,
            "DeviceIndex": 0,
            "InterfaceType": "efa-only",
            "Groups": efa_groups,
            "DeleteOnTermination": True,
        }
        for card in range(1, spec.network_cards)
    ]
    return interfaces


class EfaSecurityGroup(ec2.SecurityGroup):
    """All traffic to and from itself, as EFA requires; nothing else in, nothing else out."""

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc) -> None:
        super().__init__(
            scope,
            construct_id,
            vpc=vpc,
            allow_all_outbound=False,
            description="EFA: all traffic between GPU nodes of this cluster",
        )
        self.add_ingress_rule(self, ec2.Port.all_traffic(), "EFA from members")
        self.add_egress_rule(self, ec2.Port.all_traffic(), "EFA to members")


@dataclass(frozen=True)
class EfaLaunchTemplateProps:
    group: GpuNodeGroupConfig
    cluster_security_group_id: str
    efa_security_group_id: str
    hugepages_2mi_pages: int  # reserved on every node at boot; 0 reserves none


class EfaLaunchTemplate(Construct):
    """A launch template for one GPU node group; exposes ``launch_template`` and ``placement_group`` (or None)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EfaLaunchTemplateProps) -> None:
        super().__init__(scope, construct_id)
        group = props.group
        spec = instance_spec(group.instance_type)

        self.placement_group: ec2.CfnPlacementGroup | None = None
        if group.placement_group:
            self.placement_group = ec2.CfnPlacementGroup(self, "PlacementGroup", strategy="cluster")

        # Raw CloudFormation (PascalCase) through a property override: the EFA layout is written exactly as EC2
        # documents it, with no struct-casing translation in between.
        data: dict[str, Any] = {
            "InstanceType": spec.name,
            "NetworkInterfaces": efa_network_interfaces(
                spec,
                primary_groups=[props.cluster_security_group_id, props.efa_security_group_id],
                efa_groups=[props.efa_security_group_id],
            ),
            # Hop limit 1: a pod's packets cross one more hop, so no pod reaches IMDS and the node role's credentials.
            # The workers get theirs through EKS Pod Identity (its agent, the VPC CNI and the EFA plugin run on the
            # host network); 1 is also what EKS gives AL2023 managed nodes without a launch template. The runtime
            # reads no instance metadata.
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "VolumeSize": group.root_volume_gib,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "UserData": cdk.Fn.base64(node_user_data(props.hugepages_2mi_pages)),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "pdstack:node-group", "Value": group.name}]}
            ],
        }
        if self.placement_group is not None:
            data["Placement"] = {"GroupName": self.placement_group.ref}
        if isinstance(group.capacity, (CapacityBlock, CapacityReservation)):
            data["CapacityReservationSpecification"] = {
                "CapacityReservationTarget": {"CapacityReservationId": group.capacity.reservation_id}
            }
        if isinstance(group.capacity, CapacityBlock):
            data["InstanceMarketOptions"] = {"MarketType": "capacity-block"}

        self.launch_template = ec2.CfnLaunchTemplate(
            self, "Resource", launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty()
        )
        self.launch_template.add_property_override("LaunchTemplateData", data)
