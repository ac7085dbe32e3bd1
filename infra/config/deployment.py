"""The whole deployment file: its sections, and the checks that span them (GPU pools against the serving roles,
ports against the NetworkPolicies, the metrics paths, autoscaling bounds, node and router capacity)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, model_validator

from infra.config.autoscaling import AutoscalingConfig
from infra.config.cluster import ClusterConfig
from infra.config.common import NAME, Strict, check_unique
from infra.config.gpu_capacity import GpuNodeGroupConfig, OnDemand
from infra.config.hyperpod import HyperPodConfig, HyperPodInstanceGroup
from infra.config.image import ImageConfig
from infra.config.network import NetworkConfig
from infra.config.observability import ObservabilityConfig, ServiceLevelObjectives
from infra.config.workloads import WorkloadsConfig
from infra.gpu_capacity.node_capacity import capacity_problems
from infra.workload_names import EPHEMERAL_PORTS
from runtime.catalog import INSTANCE_CATALOG
from runtime.config import Serving
from runtime.roles import Role


class Deployment(Strict):
    name: str = Field(pattern=NAME)
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    cluster: ClusterConfig = ClusterConfig()
    network: NetworkConfig = NetworkConfig()
    gpu_provider: Literal["eks-nodegroups", "hyperpod"] = "eks-nodegroups"
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(default_factory=list)
    hyperpod: HyperPodConfig | None = None
    image: ImageConfig = ImageConfig()
    workloads: WorkloadsConfig = WorkloadsConfig()
    slo: ServiceLevelObjectives = ServiceLevelObjectives()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    serving: Serving

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if (self.account is None) != (self.region is None):
            raise ValueError("account and region go together: set both, or neither for environment-agnostic stacks")
        if self.region is None and self.network.az_count > 2 and not self.network.availability_zones:
            raise ValueError(
                f"network.az_count={self.network.az_count}: environment-agnostic stacks can place only 2 zones; "
                "set account and region, or list network.availability_zones"
            )
        if self.gpu_provider == "eks-nodegroups" and not self.gpu_node_groups:
            raise ValueError("gpu_provider 'eks-nodegroups' needs at least one entry in gpu_node_groups")
        if self.gpu_provider == "hyperpod" and self.hyperpod is None:
            raise ValueError("gpu_provider 'hyperpod' needs a hyperpod section (cluster_name, instance_groups)")
        if self.gpu_provider == "hyperpod" and self.gpu_node_groups:
            raise ValueError("gpu_node_groups is set but gpu_provider is 'hyperpod'; GPU nodes come from one place")
        if self.hyperpod is not None and self.gpu_provider != "hyperpod":
            raise ValueError(
                "a hyperpod section is set but gpu_provider is 'eks-nodegroups'; set gpu_provider: hyperpod"
            )
        check_unique("gpu_node_groups", [group.name for group in self.gpu_node_groups])
        cache = self.image.pull_through_cache
        if cache.enabled and len(prefix := cache.prefix(self.name)) > 30:
            raise ValueError(
                f"image.pull_through_cache: the derived repository prefix {prefix!r} is longer than "
                "ECR's 30 characters; set image.pull_through_cache.repository_prefix"
            )
        self._check_metrics_paths()
        self._check_ports_outside_ephemeral()
        router = self.workloads.router
        if router.allowed_client_cidrs is None:
            raise ValueError(
                "workloads.router.allowed_client_cidrs is required: the networks whose clients may call the OpenAI "
                f'API, e.g. ["{self.network.cidr}"] (the VPC: every pod and host in it) or your clients\' own subnets'
            )
        if router.internal_load_balancer and router.certificate_arn is None:
            raise ValueError(
                "workloads.router.internal_load_balancer needs workloads.router.certificate_arn: the ACM certificate "
                "(arn:aws:acm:<region>:<account>:certificate/<id>, in the deployment's region) of the load balancer's "
                "TLS listener on 443"
            )
        if router.api_keys_secret is not None and self.serving.router.api_keys_path is not None:
            raise ValueError(
                f"serving.router.api_keys_path={self.serving.router.api_keys_path!r} and "
                "workloads.router.api_keys_secret are both set: in the cluster the keys come from the secret (the "
                "path is rendered to its mount); remove serving.router.api_keys_path"
            )
        if router.api_keys_kms_key_arn is not None and router.api_keys_secret is None:
            raise ValueError(
                "workloads.router.api_keys_kms_key_arn is set without workloads.router.api_keys_secret: "
                "name the secret it encrypts, or remove the key"
            )
        if router.prestop_s + self.serving.router.shutdown_grace_s >= router.termination_grace_s:
            raise ValueError(
                f"serving.router.shutdown_grace_s={self.serving.router.shutdown_grace_s} plus "
                f"workloads.router.prestop_s={router.prestop_s} must stay below "
                f"workloads.router.termination_grace_s={router.termination_grace_s} (the router pod's "
                "terminationGracePeriodSeconds), else Kubernetes kills the router before requests in flight finish"
            )
        available = {pool.instance_type for pool in self.gpu_pools}
        source = "gpu_node_groups" if self.gpu_provider == "eks-nodegroups" else "hyperpod.instance_groups"
        for role in ("prefill", "decode"):
            wanted = getattr(self.serving, role).instance_type
            if wanted not in available:
                raise ValueError(
                    f"serving.{role}.instance_type={wanted!r} has no GPU nodes; "
                    f"{source} provide: {', '.join(sorted(available))}"
                )
        self._check_gpu_zone()
        self._check_scaling_bounds()
        self._check_capacity()
        return self

    def _check_gpu_zone(self) -> None:
        """On-demand GPU capacity comes from whichever zone the GPU subnet is in: the zone must be stated by id."""
        if self.network.gpu_az_id is not None:
            return
        on_demand = [
            f"gpu_node_groups.{i} ({g.name}, {g.instance_type})"
            for i, g in enumerate(self.gpu_node_groups)
            if isinstance(g.capacity, OnDemand)
        ]
        if self.hyperpod is not None:
            on_demand += [
                f"hyperpod.instance_groups.{i} ({g.name}, {g.instance_type})"
                for i, g in enumerate(self.hyperpod.instance_groups)
                if g.training_plan_arn is None
            ]
        if on_demand:
            raise ValueError(
                f"network.gpu_az_id is required for on-demand GPU capacity ({', '.join(on_demand)}): zone names map "
                "to different zones in each account and GPU types are not offered in every zone. Find a zone id that "
                "offers the type (aws ec2 describe-instance-type-offerings --location-type availability-zone-id "
                "--filters Name=instance-type,Values=TYPE), set network.gpu_az_id to it and network.gpu_az_index to "
                "that zone's place in the region; the deploy fails early if the two disagree"
            )

    def _check_ports_outside_ephemeral(self) -> None:
        """The NetworkPolicies admit replies on the ephemeral ports: a listening port there would be open too."""
        listening = {
            f"serving.{role}.ports.{name}": span
            for role in ("prefill", "decode")
            for name, span in self.serving.role(role).port_ranges().items()
        }
        listening["serving.router.port"] = range(self.serving.router.port, self.serving.router.port + 1)
        if self.serving.router.metrics_port is not None:
            metrics = self.serving.router.metrics_port
            listening["serving.router.metrics_port"] = range(metrics, metrics + 1)
        for field, span in listening.items():
            if span.start < EPHEMERAL_PORTS.stop and EPHEMERAL_PORTS.start < span.stop:
                raise ValueError(
                    f"{field} (ports {span.start}-{span.stop - 1}) lies in the local ephemeral port range "
                    f"{EPHEMERAL_PORTS.start}-{EPHEMERAL_PORTS.stop - 1}, where the NetworkPolicies admit replies to "
                    "connections the pods open; choose a port below 32768"
                )

    def _check_scaling_bounds(self) -> None:
        if self.autoscaling.enabled and not self.observability.enabled:
            raise ValueError(
                "autoscaling.enabled: true reads its signals from the metrics workspace: set "
                "observability.enabled: true, or autoscaling.enabled: false for fixed replica counts"
            )
        if not self.autoscaled:
            return
        for role_name in ("prefill", "decode"):
            bounds = getattr(self.autoscaling, role_name)
            replicas = self.serving.role(role_name).replicas
            most = self.max_replicas(role_name)
            if not bounds.min_replicas <= replicas <= most:
                raise ValueError(
                    f"autoscaling.{role_name}: serving.{role_name}.replicas={replicas} (the starting and fallback "
                    f"count) must lie within min_replicas={bounds.min_replicas} and max_replicas={most}"
                )

    @property
    def autoscaled(self) -> bool:
        """Whether the workers get ScaledObjects: as configured, or by default whenever the metrics pipeline runs."""
        enabled = self.autoscaling.enabled
        return self.observability.enabled if enabled is None else enabled

    def max_replicas(self, role_name: Role) -> int:
        """The most replicas a role may run: the autoscaler's bound, or the fixed count."""
        replicas = self.serving.role(role_name).replicas
        if not self.autoscaled:
            return replicas
        bound = getattr(self.autoscaling, role_name).max_replicas
        return replicas if bound is None else bound

    def _check_metrics_paths(self) -> None:
        """The managed collector reaches the Kubernetes API from its ENIs in the VPC, so the cluster endpoint must
        include private access (Amazon Managed Service for Prometheus user guide, "Set up managed collectors for
        Amazon EKS", prerequisites). An extra engine scraper inside the VPC would share the pods' subnets."""
        if self.observability.enabled and self.cluster.endpoint_access == "public":
            raise ValueError(
                "observability.enabled needs cluster.endpoint_access 'private' or 'public-and-private': the managed "
                "collector reaches the Kubernetes API through the private endpoint; or set observability.enabled: false"
            )
        vpc = ipaddress.ip_network(self.network.cidr)
        for cidr in self.workloads.engine_metrics_scraper_cidrs:
            if ipaddress.ip_network(cidr).overlaps(vpc):
                raise ValueError(
                    f"workloads.engine_metrics_scraper_cidrs: {cidr} overlaps the VPC ({vpc}), whose pod subnets it "
                    "would open to the engines' OpenAI API; the managed collector is admitted through its own "
                    "subnets (observability.enabled), an extra scraper must sit outside the VPC"
                )

    def _check_capacity(self) -> None:
        """The roles' pods, at the most replicas they may run, must fit on the most nodes the pools of their
        instance type can have."""
        for instance_type in sorted(self.serving.instance_types()):
            spec = INSTANCE_CATALOG[instance_type]
            pools = [p for p in self.gpu_pools if p.instance_type == instance_type]
            most = sum(p.max_size if isinstance(p, GpuNodeGroupConfig) else p.count for p in pools)
            gpus_needed = 0
            nodes_needed = 0
            for role_name in ("prefill", "decode"):
                role = self.serving.role(role_name)
                if role.instance_type != instance_type:
                    continue
                replicas = self.max_replicas(role_name)
                nodes_needed += replicas * role.nodes_per_replica if role.gpus_per_node * 2 > spec.gpus else 0
                gpus_needed += replicas * role.nodes_per_replica * role.gpus_per_node
            nodes_needed = max(nodes_needed, -(-gpus_needed // spec.gpus))
            if nodes_needed > most:
                raise ValueError(
                    f"serving.prefill and serving.decode need {nodes_needed} {instance_type} nodes "
                    f"(replicas, or autoscaling max_replicas, x nodes_per_replica, {gpus_needed} GPUs) but the GPU "
                    f"pools of that type reach at most {most}; raise max_size/count or lower the replicas"
                )
        # CPU, memory and hugepages as the nodes really offer them, and the routers through their rollouts
        problems = capacity_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def gpu_pools(self) -> list[GpuNodeGroupConfig] | list[HyperPodInstanceGroup]:
        """The GPU node pools of the chosen provider."""
        if self.gpu_provider == "hyperpod":
            return self.hyperpod.instance_groups if self.hyperpod else []
        return self.gpu_node_groups

    @property
    def environment_agnostic(self) -> bool:
        return self.account is None
