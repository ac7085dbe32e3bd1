"""The GPU instance types pdstack knows, with the hardware facts the stacks and the runtime depend on.

It lives in ``runtime`` (not ``infra``) because both sides need it: the stacks size EFA launch templates and pod
resources from it, and the runtime's validation and preflight compare a node against it. ``runtime`` may not import
``infra``, so the lower layer holds the table.

Sources (AWS documentation, checked Nov 2026):
- [EC2-ACC] Amazon EC2 accelerated computing instance specifications,
  https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html (GPUs, GPU memory, network cards, EFA, instance store)
- [EFA-TYPES] Supported instance types for EFA, https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html
- [EFA-MULTI] Maximize network bandwidth on accelerated instances (network cards and EFA interfaces per card),
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-acc-inst-types.html
- [ENI-CARDS] Network cards (one EFA or efa-only interface per card),
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html#network-cards
- [HP-TYPES] SageMaker HyperPod cluster instance types: the ClusterInstanceType enum of the SageMaker API,
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterInstanceRequirements.html
Cross-check: EC2 DescribeInstanceTypes (EfaInfo.MaximumEfaInterfaces, NetworkInfo.NetworkCards) gives the same
numbers for all five types; maximum EFA interfaces equal the card count for each of them.
p4d's EFA (v1) supports RDMA read but not write; GPUDirect RDMA over it works for NCCL and NIXL reads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class InstanceSpec(BaseModel):
    """Hardware facts of one EC2 GPU instance type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    gpu_model: str
    gpus: int
    gpu_memory_gib: int  # per GPU
    vcpus: int
    memory_gib: int
    network_cards: int  # every card carries one EFA interface in pdstack's launch template
    efa_interfaces: int  # EFA devices a fully wired node exposes (/sys/class/infiniband entries)
    network_gbps: int
    nvme_disks: int
    nvme_disk_gb: int  # per disk
    gpudirect_rdma: bool  # FI_EFA_USE_DEVICE_RDMA=1 is valid
    hyperpod_name: str | None  # the SageMaker HyperPod instance type; None where HyperPod does not offer it

    @property
    def total_gpu_memory_gib(self) -> int:
        return self.gpus * self.gpu_memory_gib


_SPECS = (
    # [EC2-ACC] 8 x H100 80 GB, 192 vCPU, 2048 GiB, 8 x 3800 GB NVMe, 3200 Gbps over 32 network cards [EFA-MULTI].
    InstanceSpec(
        name="p5.48xlarge",
        gpu_model="H100",
        gpus=8,
        gpu_memory_gib=80,
        vcpus=192,
        memory_gib=2048,
        network_cards=32,
        efa_interfaces=32,
        network_gbps=3200,
        nvme_disks=8,
        nvme_disk_gb=3800,
        gpudirect_rdma=True,
        hyperpod_name="ml.p5.48xlarge",
    ),
    # [EC2-ACC] 8 x H200 141 GB, same host and network as p5 (32 cards) [EFA-MULTI].
    InstanceSpec(
        name="p5e.48xlarge",
        gpu_model="H200",
        gpus=8,
        gpu_memory_gib=141,
        vcpus=192,
        memory_gib=2048,
        network_cards=32,
        efa_interfaces=32,
        network_gbps=3200,
        nvme_disks=8,
        nvme_disk_gb=3800,
        gpudirect_rdma=True,
        hyperpod_name="ml.p5e.48xlarge",
    ),
    # [EC2-ACC] 8 x H200 141 GB, EFAv3: 3200 Gbps over 16 network cards, 4 interfaces per card [ENI-CARDS].
    InstanceSpec(
        name="p5en.48xlarge",
        gpu_model="H200",
        gpus=8,
        gpu_memory_gib=141,
        vcpus=192,
        memory_gib=2048,
        network_cards=16,
        efa_interfaces=16,
        network_gbps=3200,
        nvme_disks=8,
        nvme_disk_gb=3800,
        gpudirect_rdma=True,
        hyperpod_name="ml.p5en.48xlarge",
    ),
    # [EC2-ACC] 8 x A100 40 GB, 96 vCPU, 1152 GiB, 8 x 1000 GB NVMe, 400 Gbps over 4 network cards [EFA-MULTI].
    InstanceSpec(
        name="p4d.24xlarge",
        gpu_model="A100",
        gpus=8,
        gpu_memory_gib=40,
        vcpus=96,
        memory_gib=1152,
        network_cards=4,
        efa_interfaces=4,
        network_gbps=400,
        nvme_disks=8,
        nvme_disk_gb=1000,
        gpudirect_rdma=True,
        hyperpod_name="ml.p4d.24xlarge",
    ),
    # [EC2-ACC] 8 x B200 179 GB, 192 vCPU, 2048 GiB, 8 x 3800 GB NVMe, EFAv4 3200 Gbps over 8 cards [EFA-TYPES].
    InstanceSpec(
        name="p6-b200.48xlarge",
        gpu_model="B200",
        gpus=8,
        gpu_memory_gib=179,
        vcpus=192,
        memory_gib=2048,
        network_cards=8,
        efa_interfaces=8,
        network_gbps=3200,
        nvme_disks=8,
        nvme_disk_gb=3800,
        gpudirect_rdma=True,
        hyperpod_name="ml.p6-b200.48xlarge",
    ),
)

INSTANCE_CATALOG: dict[str, InstanceSpec] = {spec.name: spec for spec in _SPECS}


def instance_spec(name: str) -> InstanceSpec:
    """The spec of ``name``; a KeyError whose message lists the known types."""
    try:
        return INSTANCE_CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(INSTANCE_CATALOG))
        raise KeyError(f"unknown instance type {name!r}; known types: {known}") from None
