"""The Kubernetes objects of the router: its Deployment, Services, disruption budget and discovery RBAC."""

from __future__ import annotations

from typing import Any

from infra.config import Deployment
from infra.node_capacity import router_max_surge
from infra.serving_config import config_hash, discovers_through_api
from infra.worker_objects import APP, labels
from infra.workload_names import (
    CONFIG_ENV_VAR,
    CONFIG_HASH_ANNOTATION,
    CONFIG_MAP,
    CONFIG_MOUNT,
    ROUTER_API_PORT_NAME,
    ROUTER_METRICS_PORT_NAME,
    SYSTEM_POOL,
)

ROUTER = f"{APP}-router"


def router_port(deployment: Deployment) -> int:
    return deployment.serving.router.port


def router_metrics_port(deployment: Deployment) -> int:
    """Where the router serves /metrics: its own port (``serving.router.metrics_port``), else the API's."""
    return deployment.serving.router.metrics_port or router_port(deployment)


def router_metrics_port_name(deployment: Deployment) -> str:
    """The container port the collector keeps (by name) for the router's /metrics."""
    return ROUTER_METRICS_PORT_NAME if deployment.serving.router.metrics_port else ROUTER_API_PORT_NAME


def _container_ports(deployment: Deployment) -> list[dict[str, Any]]:
    ports = [{"name": ROUTER_API_PORT_NAME, "containerPort": router_port(deployment), "protocol": "TCP"}]
    if deployment.serving.router.metrics_port:
        ports.append({"name": ROUTER_METRICS_PORT_NAME, "containerPort": router_metrics_port(deployment),
                      "protocol": "TCP"})
    return ports


def router_selector(deployment: Deployment) -> dict[str, str]:
    return {"app.kubernetes.io/instance": deployment.name, "app.kubernetes.io/component": "router"}


def router_deployment(deployment: Deployment, image: str) -> dict[str, Any]:
    workload = deployment.workloads.router
    probe = {"httpGet": {"port": ROUTER_API_PORT_NAME}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": ROUTER, "namespace": deployment.workloads.namespace,
                     "labels": labels(deployment, "router")},
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": router_selector(deployment)},
            # Replace one router at a time in the room the old one frees (a surge pod of the default size fits on
            # no default system node); a single router surges instead, so serving never stops. The config check
            # places the routers, the surge and the controllers on the system nodes (infra/node_capacity.py).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": router_max_surge(workload.replicas),
                "maxUnavailable": 1 - router_max_surge(workload.replicas)}},
            "template": {
                "metadata": {"labels": labels(deployment, "router"),
                             "annotations": {CONFIG_HASH_ANNOTATION: config_hash(deployment, "router")}},
                "spec": {
                    "serviceAccountName": ROUTER,
                    # The token is what the EndpointSlice watch authenticates with; without that watch, no token.
                    "automountServiceAccountToken": discovers_through_api(deployment),
                    "nodeSelector": SYSTEM_POOL,
                    # Replicas on different nodes and, where there are several, different zones.
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": policy,
                         "labelSelector": {"matchLabels": router_selector(deployment)}}
                        for key, policy in (("kubernetes.io/hostname", "DoNotSchedule"),
                                            ("topology.kubernetes.io/zone", "ScheduleAnyway"))
                    ],
                    # preStop keeps serving while endpoints drop the pod, then SIGTERM drains for
                    # serving.router.shutdown_grace_s; the config check keeps both below this
                    "terminationGracePeriodSeconds": workload.termination_grace_s,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "router",
                        "image": image,
                        "args": ["router"],
                        "env": [CONFIG_ENV_VAR],
                        "ports": _container_ports(deployment),
                        "lifecycle": {"preStop": {"sleep": {"seconds": workload.prestop_s}}},
                        "resources": {"requests": {"cpu": workload.cpu, "memory": workload.memory},
                                      "limits": {"memory": workload.memory}},
                        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/ready"},
                                           "periodSeconds": 5, "failureThreshold": 2},
                        "livenessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/health"},
                                          "periodSeconds": 10, "failureThreshold": 3},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": CONFIG_MAP}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def router_service(deployment: Deployment, *, load_balancer: bool = False) -> dict[str, Any]:
    """The router's ClusterIP Service, or (``load_balancer``) an internal NLB in front of the same pods."""
    metadata: dict[str, Any] = {"name": ROUTER, "namespace": deployment.workloads.namespace,
                                "labels": labels(deployment, "router")}
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": router_selector(deployment),
        "ports": [{"name": ROUTER_API_PORT_NAME, "port": router_port(deployment), "targetPort": ROUTER_API_PORT_NAME,
                   "protocol": "TCP"}],
    }
    if deployment.serving.router.metrics_port and not load_balancer:  # in the cluster only (the smoke Job reads it)
        spec["ports"].append({"name": ROUTER_METRICS_PORT_NAME, "port": router_metrics_port(deployment),
                              "targetPort": ROUTER_METRICS_PORT_NAME, "protocol": "TCP"})
    if load_balancer:
        metadata["name"] = f"{ROUTER}-nlb"
        metadata["annotations"] = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
            "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true",
        }
        spec["type"] = "LoadBalancer"
        spec["externalTrafficPolicy"] = "Local"
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def router_disruption_budget(deployment: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": ROUTER, "namespace": deployment.workloads.namespace,
                     "labels": labels(deployment, "router")},
        # One router at a time: with several, the others keep serving; a lone router must still let a node drain
        # (minAvailable 1 would hold every node group update until it fails).
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": router_selector(deployment)}},
    }


def router_rbac(deployment: Deployment) -> list[dict[str, Any]]:
    """The router may list and watch EndpointSlices in its namespace; nothing else."""
    namespace = deployment.workloads.namespace
    meta = {"name": ROUTER, "namespace": namespace, "labels": labels(deployment, "router")}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER},
         "subjects": [{"kind": "ServiceAccount", "name": ROUTER, "namespace": namespace}]},
    ]


def router_objects(deployment: Deployment, image: str) -> list[dict[str, Any]]:
    objects = [router_deployment(deployment, image), router_service(deployment), router_disruption_budget(deployment)]
    if deployment.workloads.router.internal_load_balancer:
        objects.append(router_service(deployment, load_balancer=True))
    return [*router_rbac(deployment), *objects]
