"""pdstack as a construct library: the parts of a disaggregated (prefill/decode) LLM inference stack on AWS, for a
team's own CDK app. pdstack's app (``app.py``, ``make synth``) is one user of exactly these names.

Install it from a checkout or a wheel into the venv of your CDK app: ``pip install /path/to/pdstack`` (the checkout's
folder, whatever its name) or ``pip install pdstack-<version>.whl``. ``deployments/team_app/`` (its own VPC and
cluster) and ``deployments/team_app_existing/`` (the platform's, imported) are complete apps that the tests build from
the installed wheel.

Configuration. Every construct takes a frozen props dataclass whose settings are sections of a deployment file
(strict pydantic models): ``load_deployment(path)`` / ``parse_deployment(mapping, name)`` read and cross-check one
(bad input raises ``DeploymentError`` naming the field, the value and what would be valid), and its sections
(``deployment.network``, ``.cluster``, ``.gpu_node_groups``, ``.hyperpod``, ``.image``, ``.observability``,
``.workloads``, ``.serving`` or ``.models``) are what the props ask for. The file's schema is the README's
"Choosing a deployment".

Constructs (each exposes what the others need as attributes; a stack may hold any of them under any id):

- ``Network(scope, id, props=NetworkProps(config, metrics_collector))``: the VPC, private subnets, the GPU subnet
  in one zone, the managed collector's subnets, interface endpoints, flow logs. Exposes ``vpc``,
  ``private_subnets``, ``gpu_subnet``, ``collector_subnets``, ``collector_cidrs``, ``interface_endpoints``.
- ``ServingImage(scope, id, props=ImageProps(config, deployment_name))``: the ECR repository and the in-account
  CodeBuild build of the serving image (vLLM + pdstack's runtime). Exposes ``repository``, ``image_uri``,
  ``image_tag`` (a hash of every build input: the same for an installed pdstack and its checkout).
- ``InferenceCluster(scope, id, props=ClusterProps(config, vpc, private_subnets, gpu_taints))``: EKS with the
  managed add-ons, pinned Helm charts, the system node group and the EFA security group. Exposes ``cluster``,
  ``addons`` (``addons.managed["vpc-cni"]``, ``addons.leader_worker_set``), ``system_nodes``,
  ``efa_security_group``, ``prerequisites`` (what anything put on the cluster waits for: the vpc-cni add-on and the
  system nodes; pass it to every construct below) and ``system_placement`` (the system pool's nodeSelector).
- ``ImportedNetwork(scope, id, props=ImportedNetworkProps(existing, cidr))``: an existing VPC by the ids a
  ``network.existing`` section names (no lookup at synthesis, nothing created). Exposes what ``Network`` does.
- ``ImportedCluster(scope, id, props=ImportedClusterProps(deployment, vpc, private_subnets))``: an existing EKS
  cluster (``cluster.existing``) with pdstack's kubectl handler and its access entry, the deploy-time check of the
  cluster, and the device plugins and LeaderWorkerSet where ``cluster.addons`` says pdstack installs them. Exposes
  what ``InferenceCluster`` does (``system_nodes`` None, ``addons.managed`` empty; ``prerequisites``: the check and
  the access entry; ``system_placement``: the platform's nodes of ``cluster.existing.system_nodes``) and ``check``.
  README, "Bring your own VPC and cluster".
- ``GpuNodeGroupCapacity(scope, id, props=GpuCapacityProps(...))``: EFA GPU node groups (EKS managed node groups), the
  GPU zone check and the Cluster Autoscaler over them (both wait for ``prerequisites``);
  ``hugepages_2mi_pages_per_node(deployment, type)`` gives each instance type's ``hugepages_2mi_pages``. Exposes
  ``gpu_node_groups``, ``zone_check``, ``node_autoscaler``.
- ``HyperPodCapacity(scope, id, props=HyperPodProps(...))``: the same GPU capacity as a SageMaker HyperPod cluster
  on the EKS cluster. Exposes ``hyperpod_cluster``, ``execution_role``, ``lifecycle_bucket``, ``zone_check``.
- ``Observability(scope, id, props=ObservabilityProps(deployment, cluster, vpc, collector_subnets,
  prerequisites))``: the Amazon Managed Service for Prometheus workspace, the managed collector (it and its rules on
  the cluster security group wait for ``prerequisites``), the alert and recording rules. Exposes
  ``workspace``, ``scraper``, ``collector_security_group``.
- ``ServingUnitWorkloads(scope, id, props=ServingUnitProps(deployment, cluster, image_uri, metrics_collector_cidrs,
  prerequisites, keda))``: one model's serving unit in its own namespace (prefill and decode workers, routers, Services,
  NetworkPolicies, the Pod Identity role that reads the model, its KEDA ScaledObjects). ``deployment`` is the unit's
  view, ``deployment.for_unit(unit)`` for each of ``deployment.units`` (one per ``models`` entry, or the one-model
  form's ``serving``); ``prerequisites`` what its objects follow (at least the cluster's ``prerequisites`` and
  ``addons.leader_worker_set``); ``keda`` the cluster's ``Autoscaling`` when the unit autoscales, else None. Exposes
  ``objects``, ``manifest``, ``model_reader``, ``api_keys``, ``scaled_objects``.
- ``Autoscaling(scope, id, props=AutoscalingProps(cluster, workspace, prerequisites))``: KEDA on the cluster, once for
  every unit, allowed to query the metrics workspace and nothing else. ``system_placement`` here and in
  ``GpuCapacityProps`` defaults to the cluster construct's; pdstack's system pool on an existing cluster is refused.
  Exposes ``chart``, ``operator_role``, ``server``.
- ``LoadBalancerController(scope, id, props=LoadBalancerControllerProps(cluster, vpc_id, system_placement))``: the
  AWS Load Balancer Controller chart and its Pod Identity role, once per cluster, for units whose
  ``workloads.router.internal_load_balancer`` is on. Exposes ``chart`` (a unit's prerequisite), ``role``.
- ``SecretsStoreCharts(scope, id, props=SecretsStoreProps(cluster, system_placement))``: the Secrets Store CSI driver
  and its AWS provider, once per cluster, for units with ``workloads.router.api_keys_secret``. Exposes ``charts``.
  A ``ServingUnitWorkloads`` that needs either (and ``cluster.addons`` does not say the platform runs it) raises
  ValueError at synthesis unless its ``prerequisites`` hold that construct or its charts.
- ``ServingWorkloads(scope, id, props=ServingWorkloadsProps(deployment, cluster, image_uri, prerequisites,
  metrics_collector_cidrs, metrics_workspace))``: every unit of a deployment (one ``ServingUnitWorkloads`` each) with
  KEDA once for them and the charts the units share (the load balancer controller, the Secrets Store CSI driver), where
  ``cluster.addons`` says pdstack installs them; ``prerequisites`` the cluster's and its LWS chart. Exposes ``units``,
  ``objects``, ``load_balancer_controller``, ``secrets_store``, ``autoscaling``.
- ``WorkloadsStack(scope, id, props=WorkloadsProps(deployment, cluster, image_uri, leader_worker_set,
  metrics_collector_cidrs, cluster_prerequisites, metrics_workspace))``: ``ServingWorkloads`` as a stack of its own
  (what pdstack's app builds).

``DeploymentStacks(app, deployment)`` builds pdstack's own stacks (``<name>-network``, ``-image``, ``-cluster``,
``-gpu-nodes`` or ``-hyperpod``, ``-observability``, ``-workloads``) from one file: what ``app.py`` does.

Compliance. ``register_checks(app)``, called once the app's constructs exist, adds cdk-nag's AwsSolutions rules and
pdstack's EKS checks to the whole app and acknowledges, on every pdstack construct wherever it sits, exactly the
findings pdstack has reasons for (the reasons are in ``infra/compliance/nag.py``). Your own constructs' findings are
yours to fix or acknowledge.

Names. pdstack installs the top-level packages ``pdstack``, ``infra`` and ``runtime``; ``import pdstack`` raises
ImportError, saying what to rename, when a package of yours named ``infra`` or ``runtime`` comes first on sys.path.
"""

from __future__ import annotations

from pdstack.installation import require_own_packages

require_own_packages()

from infra.cluster.imported import ImportedCluster, ImportedClusterProps  # noqa: E402
from infra.cluster.load_balancer_controller import LoadBalancerController, LoadBalancerControllerProps  # noqa: E402
from infra.cluster.stack import ClusterProps, InferenceCluster  # noqa: E402
from infra.compliance.nag import register_checks  # noqa: E402
from infra.config import (  # noqa: E402
    AutoscalingConfig,
    CapacityBlock,
    CapacityReservation,
    ClusterConfig,
    Deployment,
    DeploymentError,
    GpuNodeGroupConfig,
    HyperPodConfig,
    HyperPodInstanceGroup,
    ImageConfig,
    ModelConfig,
    NetworkConfig,
    ObservabilityConfig,
    OnDemand,
    PullThroughCache,
    RouterWorkload,
    ServiceLevelObjectives,
    ServingUnit,
    Taint,
    WorkloadsConfig,
    load_deployment,
    parse_deployment,
)
from infra.deployment_stacks import DeploymentStacks  # noqa: E402
from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node  # noqa: E402
from infra.gpu_capacity.stack import GpuCapacityProps, GpuNodeGroupCapacity  # noqa: E402
from infra.hyperpod.stack import HyperPodCapacity, HyperPodProps  # noqa: E402
from infra.image.stack import ImageProps, ServingImage  # noqa: E402
from infra.network.imported import ImportedNetwork, ImportedNetworkProps  # noqa: E402
from infra.network.stack import Network, NetworkProps  # noqa: E402
from infra.observability.stack import Observability, ObservabilityProps  # noqa: E402
from infra.workloads.autoscaling import Autoscaling, AutoscalingProps  # noqa: E402
from infra.workloads.router_api_keys import SecretsStoreCharts, SecretsStoreProps  # noqa: E402
from infra.workloads.stack import (  # noqa: E402
    ServingUnitProps,
    ServingUnitWorkloads,
    ServingWorkloads,
    ServingWorkloadsProps,
    WorkloadsProps,
    WorkloadsStack,
)

__version__ = "0.1.0"

__all__ = [
    "Autoscaling",
    "AutoscalingConfig",
    "AutoscalingProps",
    "CapacityBlock",
    "CapacityReservation",
    "ClusterConfig",
    "ClusterProps",
    "Deployment",
    "DeploymentError",
    "DeploymentStacks",
    "GpuCapacityProps",
    "GpuNodeGroupCapacity",
    "GpuNodeGroupConfig",
    "HyperPodCapacity",
    "HyperPodConfig",
    "HyperPodInstanceGroup",
    "HyperPodProps",
    "ImageConfig",
    "ImageProps",
    "ImportedCluster",
    "ImportedClusterProps",
    "ImportedNetwork",
    "ImportedNetworkProps",
    "InferenceCluster",
    "LoadBalancerController",
    "LoadBalancerControllerProps",
    "ModelConfig",
    "Network",
    "NetworkConfig",
    "NetworkProps",
    "Observability",
    "ObservabilityConfig",
    "ObservabilityProps",
    "OnDemand",
    "PullThroughCache",
    "RouterWorkload",
    "SecretsStoreCharts",
    "SecretsStoreProps",
    "ServiceLevelObjectives",
    "ServingImage",
    "ServingUnit",
    "ServingUnitProps",
    "ServingUnitWorkloads",
    "ServingWorkloads",
    "ServingWorkloadsProps",
    "Taint",
    "WorkloadsConfig",
    "WorkloadsProps",
    "WorkloadsStack",
    "__version__",
    "hugepages_2mi_pages_per_node",
    "load_deployment",
    "parse_deployment",
    "register_checks",
]
