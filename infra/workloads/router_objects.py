"""The Kubernetes objects of the router: its Deployment, Services, disruption budget, discovery RBAC and, when its
API keys come from Secrets Manager, the SecretProviderClass its pods mount them through."""

from __future__ import annotations

from typing import Any

import yaml

from infra.cluster.load_balancer_controller import (
    HEALTHCHECK_PATH_ANNOTATION,
    HEALTHCHECK_PROTOCOL_ANNOTATION,
    LOAD_BALANCER_CLASS,
    SCHEME_ANNOTATION,
    SSL_CERT_ANNOTATION,
    SSL_PORTS_ANNOTATION,
    TARGET_GROUP_ATTRIBUTES_ANNOTATION,
    TARGET_TYPE_ANNOTATION,
    TLS_PORT,
)
from infra.config import Deployment
from infra.gpu_capacity.node_capacity import router_max_surge
from infra.workload_names import (
    API_KEYS_FILE,
    API_KEYS_MOUNT,
    API_KEYS_SECRET_ANNOTATION,
    CONFIG_ENV_VAR,
    CONFIG_HASH_ANNOTATION,
    CONFIG_MAP,
    CONFIG_MOUNT,
    ROUTER,
    ROUTER_API_KEYS,
    ROUTER_API_PORT_NAME,
    ROUTER_METRICS_PORT_NAME,
    labels,
    router_selector,
)
from infra.workloads.serving_config import config_hash, discovers_through_api

SECRETS_STORE_DRIVER = "secrets-store.csi.k8s.io"  # the driver's CSIDriver name (chart 1.6.0 templates/csidriver.yaml)


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
        ports.append(
            {"name": ROUTER_METRICS_PORT_NAME, "containerPort": router_metrics_port(deployment), "protocol": "TCP"}
        )
    return ports


def secret_region(deployment: Deployment) -> str | None:
    """Where the keys' secret lives: its ARN's region, else the deployment's; None (environment-agnostic stacks and a
    secret named, not ARN'd): ASCP reads the node's region label (Secrets Manager user guide, SecretProviderClass)."""
    secret = deployment.workloads.router.api_keys_secret
    if secret is not None and secret.startswith("arn:"):
        return secret.split(":")[3]
    return deployment.region


def api_keys_provider_class(deployment: Deployment) -> dict[str, Any]:
    """The SecretProviderClass that mounts the keys' secret as one file (``API_KEYS_FILE``), through the router's
    EKS Pod Identity (ASCP's usePodIdentity). Fields from the Secrets Manager user guide, "SecretProviderClass"."""
    secret = deployment.workloads.router.api_keys_secret
    parameters = {
        "objects": yaml.safe_dump(
            [{"objectName": secret, "objectType": "secretsmanager", "objectAlias": API_KEYS_FILE}], sort_keys=True
        ),
        "usePodIdentity": "true",
    }
    region = secret_region(deployment)
    if region is not None:
        parameters["region"] = region
    return {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {
            "name": ROUTER_API_KEYS,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "router"),
        },
        "spec": {"provider": "aws", "parameters": parameters},
    }


def _api_keys_volume(deployment: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the keys' secret, read-only; none without a secret. The driver rewrites the file in
    place on rotation (no subPath, which would pin the first copy)."""
    if deployment.workloads.router.api_keys_secret is None:
        return [], []
    volume = {
        "name": "api-keys",
        "csi": {
            "driver": SECRETS_STORE_DRIVER,
            "readOnly": True,
            "volumeAttributes": {"secretProviderClass": ROUTER_API_KEYS},
        },
    }
    return [volume], [{"name": "api-keys", "mountPath": API_KEYS_MOUNT, "readOnly": True}]


def _api_keys_annotation(deployment: Deployment) -> dict[str, str]:
    """The secret the pods mount, on their template: naming another secret rolls them onto it (a mounted CSI volume
    keeps the parameters it was mounted with)."""
    secret = deployment.workloads.router.api_keys_secret
    return {} if secret is None else {API_KEYS_SECRET_ANNOTATION: secret}


def router_deployment(deployment: Deployment, image: str) -> dict[str, Any]:
    workload = deployment.workloads.router
    probe = {"httpGet": {"port": ROUTER_API_PORT_NAME}}
    key_volumes, key_mounts = _api_keys_volume(deployment)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": ROUTER,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "router"),
        },
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": router_selector(deployment.name)},
            # Replace one router at a time in the room the old one frees (a surge pod of the default size fits on
            # no default system node); a single router surges instead, so serving never stops. The config check
            # places the routers, the surge and the controllers on the system nodes
            # (infra/gpu_capacity/node_capacity.py).
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": router_max_surge(workload.replicas),
                    "maxUnavailable": 1 - router_max_surge(workload.replicas),
                },
            },
            "template": {
                "metadata": {
                    "labels": labels(deployment.name, "router"),
                    "annotations": {
                        CONFIG_HASH_ANNOTATION: config_hash(deployment, "router"),
                        **_api_keys_annotation(deployment),
                    },
                },
                "spec": {
                    "serviceAccountName": ROUTER,
                    # The token is what the EndpointSlice watch authenticates with; without that watch, no token.
                    "automountServiceAccountToken": discovers_through_api(deployment),
                    **deployment.system_placement,
                    # Replicas on different nodes and, where there are several, different zones.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": key,
                            "whenUnsatisfiable": policy,
                            "labelSelector": {"matchLabels": router_selector(deployment.name)},
                        }
                        for key, policy in (
                            ("kubernetes.io/hostname", "DoNotSchedule"),
                            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
                        )
                    ],
                    # preStop keeps serving while endpoints drop the pod, then SIGTERM drains for
                    # serving.router.shutdown_grace_s; the config check keeps both below this
                    "terminationGracePeriodSeconds": workload.termination_grace_s,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "router",
                            "image": image,
                            "args": ["router"],
                            "env": [CONFIG_ENV_VAR],
                            "ports": _container_ports(deployment),
                            "lifecycle": {"preStop": {"sleep": {"seconds": workload.prestop_s}}},
                            "resources": {
                                "requests": {"cpu": workload.cpu, "memory": workload.memory},
                                "limits": {"memory": workload.memory},
                            },
                            "readinessProbe": {
                                **probe,
                                "httpGet": {**probe["httpGet"], "path": "/ready"},
                                "periodSeconds": 5,
                                "failureThreshold": 2,
                            },
                            "livenessProbe": {
                                **probe,
                                "httpGet": {**probe["httpGet"], "path": "/health"},
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                                *key_mounts,
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": CONFIG_MAP}},
                        {"name": "tmp", "emptyDir": {}},
                        *key_volumes,
                    ],
                },
            },
        },
    }


def router_service(deployment: Deployment) -> dict[str, Any]:
    """The router's ClusterIP Service: the API port and, when it has its own, the metrics port (the smoke Job and
    the in-cluster clients use it)."""
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": router_selector(deployment.name),
        "ports": [
            {
                "name": ROUTER_API_PORT_NAME,
                "port": router_port(deployment),
                "targetPort": ROUTER_API_PORT_NAME,
                "protocol": "TCP",
            }
        ],
    }
    if deployment.serving.router.metrics_port:
        spec["ports"].append(
            {
                "name": ROUTER_METRICS_PORT_NAME,
                "port": router_metrics_port(deployment),
                "targetPort": ROUTER_METRICS_PORT_NAME,
                "protocol": "TCP",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": ROUTER,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "router"),
        },
        "spec": spec,
    }


def router_load_balancer_service(deployment: Deployment) -> dict[str, Any]:
    """The routers behind an internal NLB of the AWS Load Balancer Controller (infra/cluster/load_balancer_controller.py
    has the annotations' contract): TLS on 443 with the configured ACM certificate, the routers' pod IPs as targets on
    their API port, open to ``allowed_client_cidrs`` only. The API port alone: /metrics stays in the cluster."""
    router = deployment.workloads.router
    assert router.certificate_arn is not None  # the config check requires it with the load balancer
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{ROUTER}-nlb",
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "router"),
            "annotations": {
                SCHEME_ANNOTATION: "internal",
                TARGET_TYPE_ANNOTATION: "ip",
                SSL_CERT_ANNOTATION: router.certificate_arn,
                SSL_PORTS_ANNOTATION: str(TLS_PORT),
                # The routers' NetworkPolicy admits allowed_client_cidrs: it must see the clients' addresses, which
                # an NLB hides from IP targets by default (TCP/TLS target groups; ELB guide, "Client IP
                # preservation").
                TARGET_GROUP_ATTRIBUTES_ANNOTATION: "preserve_client_ip.enabled=true",
                HEALTHCHECK_PROTOCOL_ANNOTATION: "http",
                HEALTHCHECK_PATH_ANNOTATION: "/ready",
            },
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": LOAD_BALANCER_CLASS,
            "loadBalancerSourceRanges": list(router.allowed_client_cidrs or []),
            "selector": router_selector(deployment.name),
            "ports": [{"name": "https", "port": TLS_PORT, "targetPort": ROUTER_API_PORT_NAME, "protocol": "TCP"}],
        },
    }


def router_disruption_budget(deployment: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": ROUTER,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, "router"),
        },
        # One router at a time: with several, the others keep serving; a lone router must still let a node drain
        # (minAvailable 1 would hold every node group update until it fails).
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": router_selector(deployment.name)}},
    }


def router_rbac(deployment: Deployment) -> list[dict[str, Any]]:
    """The router may list and watch EndpointSlices in its namespace; nothing else."""
    namespace = deployment.workloads.namespace
    meta = {"name": ROUTER, "namespace": namespace, "labels": labels(deployment.name, "router")}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER},
            "subjects": [{"kind": "ServiceAccount", "name": ROUTER, "namespace": namespace}],
        },
    ]


def router_objects(deployment: Deployment, image: str) -> list[dict[str, Any]]:
    objects = [router_deployment(deployment, image), router_service(deployment), router_disruption_budget(deployment)]
    if deployment.workloads.router.internal_load_balancer:
        objects.append(router_load_balancer_service(deployment))
    if deployment.workloads.router.api_keys_secret is not None:
        objects.insert(0, api_keys_provider_class(deployment))  # before the pods that mount it
    return [*router_rbac(deployment), *objects]
