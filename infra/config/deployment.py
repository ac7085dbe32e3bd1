"""The whole deployment file: its sections, and the checks that span them (GPU pools against the serving roles,
ports against the NetworkPolicies, the metrics paths, autoscaling bounds, node and router capacity).

One model (a top-level ``serving``) or several (``models``, infra/config/serving_units.py): ``units`` lists the serving
units either way, ``for_unit`` gives the deployment as one unit's renderers see it. Checks of one unit run on that
view; the GPU and system-node capacity checks count every unit.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from infra.config.autoscaling import AutoscalingConfig
from infra.config.cluster import VPC_CNI_FOR_EFA_ONLY, VPC_CNI_FOR_HYPERPOD, ClusterConfig, cni_version
from infra.config.common import NAME, Strict, check_unique
from infra.config.gpu_capacity import GpuNodeGroupConfig, OnDemand
from infra.config.hyperpod import HyperPodConfig, HyperPodInstanceGroup
from infra.config.image import ImageConfig
from infra.config.network import NetworkConfig
from infra.config.observability import ObservabilityConfig, ServiceLevelObjectives
from infra.config.serving_units import ModelConfig, ServingUnit, model_unit
from infra.config.workloads import WorkloadsConfig
from infra.gpu_capacity.node_capacity import capacity_problems
from infra.workload_names import EPHEMERAL_PORTS, SYSTEM_POOL, pod_placement, tolerations_for
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
    # The one-model form; read it as ``serving`` (the property below), which a several-model deployment refuses.
    serving_section: Serving | None = Field(default=None, alias="serving")
    # The several-model form: one serving unit per entry (infra/config/serving_units.py).
    models: list[ModelConfig] = Field(default_factory=list)
    # Set on a unit's view (``for_unit``): the deployment it was taken from, for the checks that span units, and the
    # GPU pools the unit's workers may use.
    _whole: Deployment | None = PrivateAttr(default=None)
    _unit_pools: list[GpuNodeGroupConfig] | list[HyperPodInstanceGroup] | None = PrivateAttr(default=None)

    @property
    def serving(self) -> Serving:
        """The serving section of a one-model deployment, or of a unit's view."""
        if self.serving_section is None:
            raise ValueError(
                f"deployment {self.name!r} serves several models: read each unit's serving (units, for_unit)"
            )
        return self.serving_section

    @property
    def units(self) -> list[ServingUnit]:
        """The serving units: the one-model form's single unit (the deployment's own name and namespace), or one per
        ``models`` entry."""
        if self.serving_section is not None:
            return [ServingUnit(None, self.name, self.serving_section, self.workloads, self.autoscaling)]
        return [model_unit(self.name, m, self.workloads, self.autoscaling) for m in self.models]

    def for_unit(self, unit: ServingUnit) -> Deployment:
        """The deployment as one unit's renderers see it: that unit's serving, workloads and autoscaling, and its
        instance as the name the labels carry. The one-model form's unit is the deployment itself."""
        if unit.name is None:
            return self
        view = self.model_copy(
            update={
                "name": unit.instance,
                "serving_section": unit.serving,
                "workloads": unit.workloads,
                "autoscaling": unit.autoscaling,
                "models": [],
            }
        )
        view._whole = self
        view._unit_pools = self.unit_pools(unit)
        return view

    def unit_pools(self, unit: ServingUnit) -> list[GpuNodeGroupConfig] | list[HyperPodInstanceGroup]:
        """The GPU pools a unit's workers may use: those dedicated to it, or every pool no unit has dedicated."""
        pools = self.gpu_pools
        if unit.dedicated_pools is not None:
            wanted = set(unit.dedicated_pools)
            return [p for p in pools if p.name in wanted]  # type: ignore[return-value]
        taken = self.dedicated_pools
        return [p for p in pools if p.name not in taken]  # type: ignore[return-value]

    @property
    def dedicated_pools(self) -> set[str]:
        """The names of the GPU pools some unit has to itself (none in the one-model form)."""
        return {name for unit in self.whole.units for name in unit.dedicated_pools or ()}

    @property
    def whole(self) -> Deployment:
        """The deployment a unit's view was taken from (itself when it is not a view): what cross-unit checks read."""
        return self._whole or self

    @property
    def several_models(self) -> bool:
        return self.serving_section is None

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        self._check_form()
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
        for unit in self.units:
            self._on_unit(unit, Deployment._check_unit)
        self._check_gpu_zone()
        self._check_existing()
        for unit in self.units:
            self._on_unit(unit, Deployment._check_scaling_bounds)
        self._check_capacity()
        self._check_node_capacity()
        return self

    def _check_form(self) -> None:
        """Exactly one of the two forms; in the several-model form, units that cannot collide."""
        if self.serving_section is not None and self.models:
            raise ValueError(
                "serving and models are both set: serve one model with a serving section, or several with models "
                "(one entry per model, each with its own serving section), not both"
            )
        if self.serving_section is None and not self.models:
            raise ValueError(
                "the deployment serves nothing: add a serving section (one model) or a models list (several)"
            )
        if not self.models:
            return
        if "namespace" in self.workloads.model_fields_set:
            raise ValueError(
                f"workloads.namespace={self.workloads.namespace!r} with models: each model runs in its own namespace "
                "(pdstack-<name>, or its own workloads.namespace); remove the top-level one"
            )
        units = self.units
        check_unique("models", [unit.name or "" for unit in units])
        known = [pool.name for pool in self.gpu_pools]
        claimed: dict[str, str] = {}
        for unit in units:
            for name in unit.dedicated_pools or ():
                if name not in known:
                    raise ValueError(
                        f"models[{unit.name}].gpu_pools: {name!r} is not a GPU pool of this deployment; "
                        f"pools: {', '.join(known)}"
                    )
                if name in claimed:
                    raise ValueError(
                        f"models[{unit.name}].gpu_pools: {name!r} is already dedicated to models[{claimed[name]}]; "
                        "a pool is shared by the models that dedicate none, or dedicated to one"
                    )
                claimed[name] = str(unit.name)
        for what, values in (
            ("namespaces", [unit.namespace for unit in units]),
            ("serving.model.served_name", [unit.serving.model.served_name for unit in units]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(
                    f"models: {what} must differ between models (a unit's namespace holds its objects; clients "
                    f"choose a model by its served name); repeated: {', '.join(repeated)}"
                )

    def _on_unit(self, unit: ServingUnit, check: Callable[[Deployment], None]) -> None:
        """Run a one-unit check on the unit's view; its message names the unit (the one-model form's is unchanged)."""
        try:
            check(self.for_unit(unit))
        except ValueError as error:
            raise ValueError(unit.where(str(error))) from None

    def _check_unit(self) -> None:
        """One unit's own checks: its ports, its router's workload, and GPU nodes for its roles."""
        self._check_scraper_cidrs()
        self._check_ports_outside_ephemeral()
        router = self.workloads.router
        if router.allowed_client_cidrs is None:
            raise ValueError(
                "workloads.router.allowed_client_cidrs is required: the networks whose clients may call the OpenAI "
                f"API, e.g. {json.dumps(self.network.vpc_cidrs)} (the VPC: every pod and host in it) or your "
                "clients' own subnets"
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
                usable = " that this model may use (the others are dedicated to other models)"
                raise ValueError(
                    f"serving.{role}.instance_type={wanted!r} has no GPU nodes; "
                    f"{source}{usable if self.whole.dedicated_pools else ''} provide: "
                    f"{', '.join(sorted(available)) or 'none'}"
                )

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

    def _check_existing(self) -> None:
        """An existing cluster lives in an existing VPC; what its facts must be for what this deployment creates on
        it; the collector's subnets of an existing VPC exactly when the metrics pipeline runs."""
        existing = self.cluster.existing
        network = self.network.existing
        if existing is not None and network is None:
            raise ValueError(
                "cluster.existing needs network.existing: the cluster's VPC (its id, private subnets and the GPU "
                "subnet); pdstack cannot create a VPC for a cluster that already exists"
            )
        if existing is not None:
            floor, why = (
                (VPC_CNI_FOR_HYPERPOD, "HyperPod's EKS orchestrator")
                if self.gpu_provider == "hyperpod"
                else (VPC_CNI_FOR_EFA_ONLY, "the GPU nodes' efa-only interfaces")
            )
            if cni_version(existing.vpc_cni_version) < floor:
                raise ValueError(
                    f"cluster.existing.vpc_cni_version={existing.vpc_cni_version!r} is older than "
                    f"{'.'.join(map(str, floor))}, which {why} need (EKS user guide, EFA-only interfaces): update "
                    "the vpc-cni add-on (aws eks update-addon --addon-name vpc-cni)"
                )
            if self.observability.enabled and existing.authentication_mode == "CONFIG_MAP":
                raise ValueError(
                    "cluster.existing.authentication_mode 'CONFIG_MAP': the managed metrics collector is given its "
                    "Kubernetes access through an access entry (observability.enabled); switch the cluster to "
                    "API_AND_CONFIG_MAP or API, or set observability.enabled: false"
                )
            if self.gpu_provider == "hyperpod" and existing.authentication_mode == "CONFIG_MAP":
                raise ValueError(
                    "cluster.existing.authentication_mode 'CONFIG_MAP': a HyperPod cluster registers its nodes through "
                    "access entries; switch the cluster to API_AND_CONFIG_MAP or API"
                )
        if network is not None:
            if self.observability.enabled and len(network.collector_subnets) < 2:
                raise ValueError(
                    "observability.enabled needs network.existing.collector_subnets: two to five subnets, in at least "
                    "two zones, that hold nothing but the managed collector's interfaces (the serving "
                    "NetworkPolicies admit every address in them); or set observability.enabled: false"
                )
            if not self.observability.enabled and network.collector_subnets:
                raise ValueError(
                    "network.existing.collector_subnets is set but observability.enabled is false: nothing would use "
                    "them; remove them"
                )

    @property
    def system_node_selector(self) -> dict[str, str]:
        """Where pdstack's routers and controllers run: its system node group, or the existing cluster's nodes the
        file names (an empty selector: any node their tolerations admit)."""
        existing = self.cluster.existing
        return dict(existing.system_nodes.node_selector) if existing is not None else dict(SYSTEM_POOL)

    @property
    def system_tolerations(self) -> list[dict]:
        existing = self.cluster.existing
        return tolerations_for(existing.system_nodes.taints) if existing is not None else []

    @property
    def system_placement(self) -> dict:
        """The nodeSelector and tolerations of every pod pdstack runs off the GPU nodes."""
        return pod_placement(self.system_node_selector, self.system_tolerations)

    @property
    def system_instance_type(self) -> str:
        existing = self.cluster.existing
        return existing.system_nodes.instance_type if existing is not None else self.cluster.system_instance_type

    @property
    def system_node_count(self) -> int:
        existing = self.cluster.existing
        return existing.system_nodes.count if existing is not None else self.cluster.system_node_count

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
        # An existing cluster's private endpoint is checked at deploy time (infra/cluster/existing_check/).
        if self.observability.enabled and self.cluster.existing is None and self.cluster.endpoint_access == "public":
            raise ValueError(
                "observability.enabled needs cluster.endpoint_access 'private' or 'public-and-private': the managed "
                "collector reaches the Kubernetes API through the private endpoint; or set observability.enabled: false"
            )

    def _check_scraper_cidrs(self) -> None:
        for cidr in self.workloads.engine_metrics_scraper_cidrs:
            vpc = next(
                (b for b in self.network.vpc_cidrs if ipaddress.ip_network(cidr).overlaps(ipaddress.ip_network(b))),
                None,
            )
            if vpc is not None:
                raise ValueError(
                    f"workloads.engine_metrics_scraper_cidrs: {cidr} overlaps the VPC ({vpc}), whose pod subnets it "
                    "would open to the engines' OpenAI API; the managed collector is admitted through its own "
                    "subnets (observability.enabled), an extra scraper must sit outside the VPC"
                )

    def _check_capacity(self) -> None:
        """The roles' pods, at the most replicas they may run, must fit on the most nodes the pools of their
        instance type can have: every unit's roles of a type share the pools of that type they may use (the shared
        pools, or a unit's dedicated ones)."""
        views = [self.for_unit(unit) for unit in self.units]
        by_pools: dict[tuple[str, ...], list[Deployment]] = {}
        for view in views:
            by_pools.setdefault(tuple(sorted(p.name for p in view.gpu_pools)), []).append(view)
        for sharing in by_pools.values():
            self._check_pool_capacity(sharing, every=len(sharing) == len(views))

    def _check_pool_capacity(self, views: list[Deployment], every: bool) -> None:
        """Units that use the same pools: their pods of each instance type on those pools of that type."""
        for instance_type in sorted({t for view in views for t in view.serving.instance_types()}):
            spec = INSTANCE_CATALOG[instance_type]
            pools = [p for p in views[0].gpu_pools if p.instance_type == instance_type]
            most = sum(p.max_size if isinstance(p, GpuNodeGroupConfig) else p.count for p in pools)
            gpus_needed = 0
            nodes_needed = 0
            for view in views:
                for role_name in ("prefill", "decode"):
                    role = view.serving.role(role_name)
                    if role.instance_type != instance_type:
                        continue
                    replicas = view.max_replicas(role_name)
                    nodes_needed += replicas * role.nodes_per_replica if role.gpus_per_node * 2 > spec.gpus else 0
                    gpus_needed += replicas * role.nodes_per_replica * role.gpus_per_node
            nodes_needed = max(nodes_needed, -(-gpus_needed // spec.gpus))
            if nodes_needed > most:
                if not self.several_models:
                    roles = "serving.prefill and serving.decode"
                elif every:
                    roles = "every model's prefill and decode"
                else:
                    roles = " and ".join(f"models[{view.name.removeprefix(self.name + '-')}]" for view in views)
                    roles += f" (on GPU pools {', '.join(p.name for p in pools)}): prefill and decode"
                raise ValueError(
                    f"{roles} need {nodes_needed} {instance_type} nodes "
                    f"(replicas, or autoscaling max_replicas, x nodes_per_replica, {gpus_needed} GPUs) but the GPU "
                    f"pools of that type reach at most {most}; raise max_size/count or lower the replicas"
                )

    def _check_node_capacity(self) -> None:
        # CPU, memory and hugepages as the nodes really offer them, and the routers through their rollouts
        problems = capacity_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def gpu_pools(self) -> list[GpuNodeGroupConfig] | list[HyperPodInstanceGroup]:
        """The GPU node pools of the chosen provider; on a unit's view, those its workers may use."""
        if self._unit_pools is not None:
            return self._unit_pools
        if self.gpu_provider == "hyperpod":
            return self.hyperpod.instance_groups if self.hyperpod else []
        return self.gpu_node_groups

    @property
    def environment_agnostic(self) -> bool:
        return self.account is None
