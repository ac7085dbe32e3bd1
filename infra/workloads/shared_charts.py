"""What a serving unit needs installed on the cluster beside it, once for every unit: the AWS Load Balancer Controller
(``workloads.router.internal_load_balancer``) and the Secrets Store CSI driver with its AWS provider
(``workloads.router.api_keys_secret``), unless ``cluster.addons`` says the platform runs them.

pdstack's WorkloadsStack installs them itself; a team's own app places ``LoadBalancerController`` and
``SecretsStoreCharts`` (both exported by pdstack) and passes them in the unit's ``prerequisites``. A unit that needs
one and was not given it would deploy a Service no controller reconciles, or routers whose key mount never comes up:
``missing_shared_charts`` names the construct to add, and ServingUnitWorkloads refuses such a unit at synthesis."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct, IDependable

from infra.cluster.load_balancer_controller import LoadBalancerController
from infra.config import Deployment
from infra.workloads.router_api_keys import SecretsStoreCharts


def _given(prerequisites: Sequence[IDependable], kind: type) -> list[IDependable]:
    """The prerequisites that are, or sit directly in, a construct of ``kind`` (the construct or its charts)."""
    return [
        p for p in prerequisites if isinstance(p, kind) or (isinstance(p, Construct) and isinstance(p.node.scope, kind))
    ]


def missing_shared_charts(deployment: Deployment, prerequisites: Sequence[IDependable]) -> list[str]:
    """For one unit's view: what its prerequisites lack, each with the construct that provides it."""
    router, addons = deployment.workloads.router, deployment.cluster.addons
    missing = []
    if (
        router.internal_load_balancer
        and addons.load_balancer_controller == "pdstack"
        and not _given(prerequisites, LoadBalancerController)
    ):
        missing.append(
            "workloads.router.internal_load_balancer needs the AWS Load Balancer Controller on the cluster: add "
            "LoadBalancerController(scope, id, props=LoadBalancerControllerProps(cluster, vpc_id, system_placement)) "
            "once and put its chart in this unit's prerequisites (or set cluster.addons.load_balancer_controller: "
            "platform when the platform runs it)"
        )
    if router.api_keys_secret is not None and addons.secrets_store_csi_driver == "pdstack":
        given = _given(prerequisites, SecretsStoreCharts)
        whole = any(isinstance(p, SecretsStoreCharts) for p in given)
        if not whole and len(given) < 2:
            missing.append(
                "workloads.router.api_keys_secret needs the Secrets Store CSI driver and its AWS provider on the "
                "cluster: add SecretsStoreCharts(scope, id, props=SecretsStoreProps(cluster, system_placement)) once "
                "and put its charts in this unit's prerequisites (or set cluster.addons.secrets_store_csi_driver: "
                "platform when the platform runs them)"
            )
    return missing
