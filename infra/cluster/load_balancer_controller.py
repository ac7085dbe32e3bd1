"""The AWS Load Balancer Controller: the Helm chart that turns the router's LoadBalancer Service into an internal NLB
(IP targets, a TLS listener with an ACM certificate), its Pod Identity role with the controller's published IAM
policy, pinned in one place. Installed only when ``workloads.router.internal_load_balancer`` is on.

Pins, read from kubernetes-sigs/aws-load-balancer-controller at tag v3.5.0 (commit 11eb202c):
- helm/aws-load-balancer-controller/Chart.yaml: version 3.5.0, appVersion v3.5.0 (published in the eks-charts
  repository, https://aws.github.io/eks-charts, as every AWS chart pdstack installs).
- docs/install/iam_policy.json: the controller's IAM policy, carried verbatim in
  infra/cluster/aws_load_balancer_controller_iam_policy.json (commercial partition ARNs, as published).
- helm/aws-load-balancer-controller/values.yaml: replicaCount 2, resources {} (no requests unless set: the values
  below set the file's own commented example, 100m / 128Mi, so infra/gpu_capacity/node_capacity.py can count them),
  clusterName required, region and vpcId read from instance metadata unless set (set here: pods with IMDS hop
  limit 1 cannot read it), enableServiceMutatorWebhook true with failurePolicy Fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.cluster.addons import HelmChartPin
from infra.gpu_capacity.node_capacity import LOAD_BALANCER_CONTROLLER_REPLICAS, LOAD_BALANCER_CONTROLLER_REQUESTS
from infra.workload_names import SYSTEM_PLACEMENT

LOAD_BALANCER_CONTROLLER = HelmChartPin(
    chart="aws-load-balancer-controller",
    repository="https://aws.github.io/eks-charts",
    version="3.5.0",
    namespace="kube-system",
)
LOAD_BALANCER_CONTROLLER_APP_VERSION = "v3.5.0"
LOAD_BALANCER_CONTROLLER_SERVICE_ACCOUNT = "aws-load-balancer-controller"
IAM_POLICY_FILE = Path(__file__).with_name("aws_load_balancer_controller_iam_policy.json")

# The controller's Service contract (docs/guide/service/annotations.md at v3.5.0): it reconciles a Service of type
# LoadBalancer whose spec.loadBalancerClass is this; scheme defaults to internal but is stated; target type defaults
# to instance under a loadBalancerClass, so ip is stated; ssl-cert takes ACM ARNs and ssl-ports the frontend ports
# that get TLS listeners; spec.loadBalancerSourceRanges becomes the NLB security group's inbound rules (the doc's
# recommended form over the source-ranges annotation; 0.0.0.0/0 when unset).
LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"
SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
TARGET_TYPE_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
SSL_CERT_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
SSL_PORTS_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
# stringMap of target group attributes; preserve_client_ip.enabled=true is the doc's own example.
TARGET_GROUP_ATTRIBUTES_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
# TCP by default; with http, the path ("/" by default) on the traffic port.
HEALTHCHECK_PROTOCOL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol"
HEALTHCHECK_PATH_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"
TLS_PORT = 443


def iam_policy_document() -> dict[str, Any]:
    return json.loads(IAM_POLICY_FILE.read_text())


def load_balancer_controller_values(
    cluster_name: str, vpc_id: str, region: str, placement: dict[str, Any] = SYSTEM_PLACEMENT
) -> dict[str, Any]:
    return {
        "clusterName": cluster_name,
        "vpcId": vpc_id,
        "region": region,
        # The chart's default: one leader, one standby that also answers the webhooks.
        "replicaCount": LOAD_BALANCER_CONTROLLER_REPLICAS,
        "serviceAccount": {"create": True, "name": LOAD_BALANCER_CONTROLLER_SERVICE_ACCOUNT},
        **placement,
        # What infra/gpu_capacity/node_capacity.py counts on the system nodes.
        "resources": {
            "requests": {
                "cpu": f"{LOAD_BALANCER_CONTROLLER_REQUESTS.cpu_m}m",
                "memory": f"{LOAD_BALANCER_CONTROLLER_REQUESTS.memory_mib}Mi",
            }
        },
        # pdstack's Service names its loadBalancerClass itself; the mutator webhook (failurePolicy Fail) would make
        # every LoadBalancer Service in the cluster wait on this controller.
        "enableServiceMutatorWebhook": False,
    }


@dataclass(frozen=True)
class LoadBalancerControllerProps:
    cluster: eks.ICluster
    vpc_id: str
    # the system nodes' nodeSelector and tolerations (Deployment.system_placement)
    system_placement: dict[str, Any] = field(default_factory=lambda: dict(SYSTEM_PLACEMENT))


class LoadBalancerController(Construct):
    """Exposes ``role`` (Pod Identity, the published policy), ``association`` and ``chart``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: LoadBalancerControllerProps) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            description=f"AWS Load Balancer Controller {LOAD_BALANCER_CONTROLLER_APP_VERSION} (its published policy)",
            inline_policies={"AWSLoadBalancerController": iam.PolicyDocument.from_json(iam_policy_document())},
        )
        self.association = eks.CfnPodIdentityAssociation(
            self,
            "PodIdentity",
            cluster_name=props.cluster.cluster_name,
            namespace=LOAD_BALANCER_CONTROLLER.namespace,
            service_account=LOAD_BALANCER_CONTROLLER_SERVICE_ACCOUNT,
            role_arn=self.role.role_arn,
        )
        pin = LOAD_BALANCER_CONTROLLER
        self.chart = eks.HelmChart(
            self,
            "Chart",
            cluster=props.cluster,
            chart=pin.chart,
            repository=pin.repository,
            version=pin.version,
            namespace=pin.namespace,
            create_namespace=False,
            wait=True,
            values=load_balancer_controller_values(
                props.cluster.cluster_name, props.vpc_id, cdk.Aws.REGION, props.system_placement
            ),
        )
        # Pod Identity credentials are injected when a pod is created: the association comes first.
        self.chart.node.add_dependency(self.association)
