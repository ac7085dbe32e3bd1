"""What the third-party charts pdstack installs do with their values: their default placement values and how their
templates turn values into the pod's nodeSelector, affinity and tolerations. Pinned per chart version, with the
file each fact was read from. When a pin in infra/cluster/addons.py moves, re-read these files at the new version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.infra.scheduling import coalesce


def _required_terms(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
            }
        }
    }


# NVIDIA/k8s-device-plugin v0.20.0 (commit 1b826acc), deployments/helm/nvidia-device-plugin/values.yaml lines 63-93.
NVIDIA_DEVICE_PLUGIN_DEFAULTS: dict[str, Any] = {
    "nodeSelector": {},
    "affinity": _required_terms(
        [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In", "values": ["true"]}],
        [{"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In", "values": ["NVIDIA"]}],
        [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}],
    ),
    "tolerations": [
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ],
}


def nvidia_device_plugin_pod(values: dict[str, Any]) -> dict[str, Any]:
    """templates/daemonset-device-plugin.yml (v0.20.0) lines 264-275: each of the three copied verbatim when set."""
    merged = coalesce(NVIDIA_DEVICE_PLUGIN_DEFAULTS, values)
    return {k: merged[k] for k in ("nodeSelector", "affinity", "tolerations") if merged.get(k)}


# aws/eks-charts commit bfe91c4b (chart version v0.5.30, Chart.yaml), stable/aws-efa-k8s-device-plugin/values.yaml.
# supportedInstanceLabels.values lists ~300 EC2 instance type names and no SageMaker ml.* name; the catalog's five:
EFA_DEVICE_PLUGIN_DEFAULTS: dict[str, Any] = {
    "supportedInstanceLabels": {
        "keys": ["node.kubernetes.io/instance-type"],
        "values": ["p4d.24xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge"],
    },
    "nodeSelector": {},
    "tolerations": [],
}


def efa_device_plugin_pod(values: dict[str, Any]) -> dict[str, Any]:
    """templates/daemonset.yaml (bfe91c4b): a fixed CriticalAddonsOnly toleration then .Values.tolerations; the
    nodeSelector when set; a required affinity with one term per supportedInstanceLabels key (instance-type In the
    values) whose last term also requires eks.amazonaws.com/compute-type NotIn [auto]."""
    merged = coalesce(EFA_DEVICE_PLUGIN_DEFAULTS, values)
    labels = merged["supportedInstanceLabels"]
    terms = [[{"key": key, "operator": "In", "values": list(labels["values"])}] for key in labels["keys"]]
    terms[-1].append({"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["auto"]})
    pod: dict[str, Any] = {
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, *(merged.get("tolerations") or [])],
        "affinity": _required_terms(*terms),
    }
    if merged.get("nodeSelector"):
        pod["nodeSelector"] = merged["nodeSelector"]
    return pod


# kubernetes-sigs/lws v0.10.0 (commit 2161f38f), charts/lws/values.yaml lines 53-55: nodeSelector {}, tolerations [],
# affinity {}; templates/manager/deployment.yaml lines 85-96 copy each when set. The controller is a Deployment.
# charts/lws/values.yaml resources.requests cpu 1, memory 1Gi (read at a stored snapshot, commit 15f5dada; the
# manager container takes .Values.resources), replicaCount 1.
LWS_DEFAULTS: dict[str, Any] = {
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
}


def _with_requests(pod: dict[str, Any], resources: dict[str, Any] | None) -> dict[str, Any]:
    """The placement fields plus one container carrying the chart's resources (what the scheduler sums)."""
    return {**pod, "containers": [{"name": "manager", "resources": resources or {}}]}


def lws_controller_pod(values: dict[str, Any]) -> dict[str, Any]:
    merged = coalesce(LWS_DEFAULTS, values)
    pod = {k: merged[k] for k in ("nodeSelector", "affinity", "tolerations") if merged.get(k)}
    return _with_requests(pod, merged.get("resources"))


# kedacore/charts v2.20.2 (commit cbb9bb8c), keda/values.yaml: top-level nodeSelector {} (line 572), tolerations []
# (574), affinity {} (588), and per component (operator, metricsServer, webhooks) the same three, empty. Each
# Deployment (templates/manager/deployment.yaml lines 238-257, metrics-server/deployment.yaml 203-219,
# webhooks/deployment.yaml 158-174) always selects kubernetes.io/os: linux, then adds the component's nodeSelector or
# else the top-level one; affinity and tolerations likewise, the component's or else the top-level ones.
KEDA_COMPONENTS = {
    "operator": "keda-operator",
    "metricsServer": "keda-operator-metrics-apiserver",
    "webhooks": "keda-admission-webhooks",
}
# values.yaml resources.{operator,metricServer,webhooks}.requests: cpu 100m, memory 100Mi each (the chart's later
# values schema lowers the webhooks to 10m/10Mi; the larger figure is kept).
KEDA_DEFAULTS: dict[str, Any] = {
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
    **{c: {"nodeSelector": {}, "tolerations": [], "affinity": {}} for c in KEDA_COMPONENTS},
    "resources": {c: {"requests": {"cpu": "100m", "memory": "100Mi"}} for c in KEDA_COMPONENTS},
}


def keda_pods(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    merged = coalesce(KEDA_DEFAULTS, values)
    pods = {}
    for component, name in KEDA_COMPONENTS.items():
        own = merged[component]
        pod: dict[str, Any] = {
            "nodeSelector": {"kubernetes.io/os": "linux", **(own["nodeSelector"] or merged["nodeSelector"])}
        }
        for key in ("affinity", "tolerations"):
            if own[key] or merged[key]:
                pod[key] = own[key] or merged[key]
        pods[name] = _with_requests(pod, merged["resources"].get(component))
    return pods


# kubernetes/autoscaler tag cluster-autoscaler-chart-9.59.0 (commit 5a0b98e4, appVersion 1.35.0),
# cluster-autoscaler/charts/cluster-autoscaler/values.yaml: affinity {} (line 3), nodeSelector {} (334), tolerations []
# (480); templates/deployment.yaml lines 327-337 copy affinity and nodeSelector when set, tolerations always. The same
# at chart 9.53.0 (commit a2db9eb7; values lines 3, 329, 466; deployment.yaml 321-331): 9.54-9.59 changed no placement.
CLUSTER_AUTOSCALER_DEFAULTS: dict[str, Any] = {"nodeSelector": {}, "tolerations": [], "affinity": {}}


def cluster_autoscaler_pod(values: dict[str, Any]) -> dict[str, Any]:
    """values.yaml resources {} (no requests) unless the values set them."""
    merged = coalesce(CLUSTER_AUTOSCALER_DEFAULTS, values)
    pod = {k: merged[k] for k in ("nodeSelector", "affinity", "tolerations") if merged.get(k)}
    return _with_requests(pod, merged.get("resources"))


# Each chart version's appVersion (its Chart.yaml at the kubernetes/autoscaler tag cluster-autoscaler-chart-<version>):
# the Cluster Autoscaler's minor must be the cluster's.
CLUSTER_AUTOSCALER_APP_VERSIONS = {"9.53.0": "1.34.2", "9.59.0": "1.35.0"}


# kubernetes-sigs/aws-load-balancer-controller tag v3.5.0 (commit 11eb202c; published to aws/eks-charts as chart 3.5.0,
# appVersion v3.5.0), helm/aws-load-balancer-controller/values.yaml: replicaCount 2 (line 5), resources {} (62),
# nodeSelector {} (78), tolerations [] (80), affinity {} (83), configureDefaultAffinity true (88). templates/
# deployment.yaml lines 264-287: the nodeSelector and tolerations when set; the affinity when set, else (default
# affinity on) a preferred (weight 100) pod anti-affinity on kubernetes.io/hostname among the controller's own pods.
LOAD_BALANCER_CONTROLLER_DEFAULTS: dict[str, Any] = {
    "replicaCount": 2,
    "resources": {},
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
    "configureDefaultAffinity": True,
}


def load_balancer_controller_pods(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One pod per replica (the scheduler places each)."""
    merged = coalesce(LOAD_BALANCER_CONTROLLER_DEFAULTS, values)
    pod: dict[str, Any] = {k: merged[k] for k in ("nodeSelector", "tolerations") if merged.get(k)}
    if merged.get("affinity"):
        pod["affinity"] = merged["affinity"]
    elif merged["configureDefaultAffinity"]:
        pod["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {
                                "matchExpressions": [
                                    {
                                        "key": "app.kubernetes.io/name",
                                        "operator": "In",
                                        "values": ["aws-load-balancer-controller"],
                                    }
                                ]
                            },
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return {f"replica-{i}": _with_requests(pod, merged.get("resources")) for i in range(merged["replicaCount"])}


# kubernetes-sigs/secrets-store-csi-driver tag v1.6.0 (commit 0aad886f), charts/secrets-store-csi-driver: a DaemonSet
# (templates/secrets-store-csi-driver.yaml) whose nodeSelector is kubernetes.io/os: linux plus .Values.linux.
# nodeSelector, affinity .Values.linux.affinity, tolerations .Values.linux.tolerations; values.yaml: linux.affinity a
# required term type NotIn [virtual-kubelet], linux.tolerations [{operator: Exists}] (every taint), nodeSelector {};
# three containers with requests: registrar 10m/20Mi, secrets-store (linux.driver) 50m/100Mi, liveness-probe 10m/20Mi.
SECRETS_STORE_CSI_DRIVER_DEFAULTS: dict[str, Any] = {
    "linux": {
        "nodeSelector": {},
        "affinity": _required_terms([{"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}]),
        "tolerations": [{"operator": "Exists"}],
        "registrar": {"resources": {"requests": {"cpu": "10m", "memory": "20Mi"}}},
        "driver": {"resources": {"requests": {"cpu": "50m", "memory": "100Mi"}}},
        "livenessProbe": {"resources": {"requests": {"cpu": "10m", "memory": "20Mi"}}},
    }
}


def secrets_store_csi_driver_pod(values: dict[str, Any]) -> dict[str, Any]:
    linux = coalesce(SECRETS_STORE_CSI_DRIVER_DEFAULTS, values)["linux"]
    return {
        "nodeSelector": {"kubernetes.io/os": "linux", **(linux["nodeSelector"] or {})},
        "affinity": linux["affinity"],
        "tolerations": linux["tolerations"],
        "containers": [
            {"name": name, "resources": linux[key]["resources"]}
            for name, key in (
                ("node-driver-registrar", "registrar"),
                ("secrets-store", "driver"),
                ("liveness", "livenessProbe"),
            )
        ],
    }


# aws/secrets-store-csi-driver-provider-aws commit a74182c1 (chart 3.1.1), charts/secrets-store-csi-driver-provider-aws:
# a DaemonSet (templates/daemonset.yaml lines 94-106): nodeSelector kubernetes.io/os: linux plus .Values.nodeSelector,
# tolerations and affinity copied when set; values.yaml: affinity a required term eks.amazonaws.com/compute-type
# NotIn [fargate], tolerations [], nodeSelector {}, resources.requests 50m/100Mi.
SECRETS_STORE_PROVIDER_AWS_DEFAULTS: dict[str, Any] = {
    "nodeSelector": {},
    "tolerations": [],
    "affinity": _required_terms(
        [{"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]}]
    ),
    "resources": {"requests": {"cpu": "50m", "memory": "100Mi"}},
}


def secrets_store_provider_aws_pod(values: dict[str, Any]) -> dict[str, Any]:
    merged = coalesce(SECRETS_STORE_PROVIDER_AWS_DEFAULTS, values)
    pod = {
        "nodeSelector": {"kubernetes.io/os": "linux", **(merged["nodeSelector"] or {})},
        **{k: merged[k] for k in ("affinity", "tolerations") if merged.get(k)},
    }
    return {**pod, "containers": [{"name": "provider-aws-installer", "resources": merged["resources"]}]}


Renderer = Callable[[dict[str, Any]], dict[str, Any]]
# Chart name (as pinned in infra/cluster/addons.py) -> (version the facts above were read at, the renderer of its one
# pod).
CHART_PODS: dict[str, tuple[str, Renderer]] = {
    "nvidia-device-plugin": ("0.20.0", nvidia_device_plugin_pod),
    "aws-efa-k8s-device-plugin": ("v0.5.30", efa_device_plugin_pod),
    "lws": ("0.10.0", lws_controller_pod),
    "cluster-autoscaler": ("9.59.0", cluster_autoscaler_pod),
    "secrets-store-csi-driver": ("1.6.0", secrets_store_csi_driver_pod),
    "secrets-store-csi-driver-provider-aws": ("3.1.1", secrets_store_provider_aws_pod),
}
# Charts with several pods: the renderer returns each, by its Deployment's name.
CHART_COMPONENT_PODS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, dict[str, Any]]]]] = {
    "keda": ("2.20.2", keda_pods),
    "aws-load-balancer-controller": ("3.5.0", load_balancer_controller_pods),
}
# Which extended resource each device plugin offers on the node it runs on (the plugins' READMEs).
OFFERS = {"nvidia-device-plugin": "nvidia.com/gpu", "aws-efa-k8s-device-plugin": "vpc.amazonaws.com/efa"}
# Charts whose pod is a DaemonSet's (one on every node it may land on) and that offer nothing: their rendered requests
# are taken from each node they land on.
DAEMONSET_CHARTS = ("secrets-store-csi-driver", "secrets-store-csi-driver-provider-aws")


# --- controllers' contracts: what a controller does with the objects pdstack renders ----------------------------------

# kubernetes-sigs/lws (chart 0.10.0 as pinned in infra/cluster/addons.py; read in the stored snapshots at commits
# 0f920e56
# and 1b17603c of the same files):
# - pkg/utils/controller/controller_utils.go ``CreateHeadlessServiceIfNotExists``: the controller Gets a Service named
#   after the LeaderWorkerSet and creates its own (clusterIP None, PublishNotReadyAddresses true, selector the LWS
#   name label) ONLY when none exists; an existing Service of that name is kept as it is.
# - pkg/utils/pod/pod_utils.go ``AddLWSVariables``: LWS_LEADER_ADDRESS = <lws>-<group>.<subdomain>.<namespace>,
#   the subdomain being the LWS's headless Service (the LWS name under the default Shared subdomain policy). The
#   record of a leader that is not Ready exists only through PublishNotReadyAddresses.
LWS_HEADLESS_SERVICE_NAME = "{lws}"  # the Service name the controller wants for itself
LWS_HEADLESS_SERVICE_PUBLISHES_NOT_READY = True
LWS_LEADER_ADDRESS = "{lws}-{group}.{subdomain}.{namespace}"


def lws_owned_service_names(objects: list[dict[str, Any]]) -> set[str]:
    """Names of the Services the LWS controller must be free to create for the LeaderWorkerSets in ``objects``."""
    return {
        LWS_HEADLESS_SERVICE_NAME.format(lws=o["metadata"]["name"]) for o in objects if o["kind"] == "LeaderWorkerSet"
    }
