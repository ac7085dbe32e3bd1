"""ObservabilityStack: the metrics pipeline of one deployment, from its ``observability`` section.

- ``MetricsWorkspace``: an Amazon Managed Service for Prometheus workspace, encrypted with its own KMS key, with
  pdstack's rule groups (alerts.py, the same rendering as the committed rules/pdstack.yaml) loaded into it.
- The AWS managed collector (``AWS::APS::Scraper``) in its own subnets (infra/network/stack.py: no node and so no pod
  lives there, which lets the NetworkPolicies admit it by address) with its own security group, scraping the router and
  every engine pod (targets.py) into the workspace. It runs as its service-linked role
  (AWSServiceRoleForAmazonPrometheusScraper_*); the cluster authenticates through access entries (API mode), so the
  service creates the scraper's access entry and its Kubernetes permissions itself when the scraper is created
  (Amazon Managed Service for Prometheus user guide, "Configure Amazon EKS for scraper access with access
  entries"). A second access entry for that role from this stack would fail: one principal, one entry.
The workspace is the one pipeline KEDA's prometheus trigger queries too: ``workspace.query_url`` and
``workspace.grant_query``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import yaml
from aws_cdk import aws_aps as aps
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct, IDependable

from infra.config import Deployment
from infra.observability.generate import rules_text
from infra.observability.targets import scrape_config, scraped_port_numbers
from infra.stack_outputs import ObservabilityOutputs

RULES_NAMESPACE = "pdstack"
# What a Prometheus-compatible client (Grafana, KEDA's prometheus scaler) needs to read a workspace.
QUERY_ACTIONS = ("aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata")
# The collector discovers its targets through the Kubernetes API (the cluster's private endpoint, on the control
# plane's ENIs) before it scrapes them.
KUBERNETES_API_PORT = 443


@dataclass(frozen=True)
class ObservabilityProps:
    deployment: Deployment
    cluster: eks.ICluster
    vpc: ec2.IVpc
    collector_subnets: list[ec2.ISubnet]  # the network stack's, where nothing else lives
    # the cluster's prerequisites (InferenceCluster/ImportedCluster.prerequisites): the scraper and its rules on the
    # cluster security group wait for them (on an existing cluster, for its check)
    prerequisites: Sequence[IDependable]


class MetricsWorkspace(Construct):
    """Exposes ``arn``, ``workspace_id``, ``prometheus_endpoint`` (the Prometheus HTTP API root, ending in '/': what
    Grafana and KEDA's ``serverAddress`` take), ``query_url`` (its instant-query URL), ``remote_write_url`` and
    ``grant_query``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        retention_days: int,
        rules: str,
        customer_managed_key: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        # None: the AWS owned key (ObservabilityConfig.customer_managed_key says why that is the default).
        self.key: kms.Key | None = None
        if customer_managed_key:
            self.key = kms.Key(
                self,
                "Key",
                enable_key_rotation=True,
                removal_policy=cdk.RemovalPolicy.DESTROY,
                description=f"Amazon Managed Service for Prometheus workspace {alias}: samples at rest",
            )
        self.workspace = aps.CfnWorkspace(
            self,
            "Workspace",
            alias=alias,
            kms_key_arn=self.key.key_arn if self.key else None,
            workspace_configuration=aps.CfnWorkspace.WorkspaceConfigurationProperty(
                retention_period_in_days=retention_days
            ),
        )
        self.rules = aps.CfnRuleGroupsNamespace(
            self, "Rules", name=RULES_NAMESPACE, workspace=self.workspace.attr_arn, data=rules
        )
        self.arn = self.workspace.attr_arn
        self.workspace_id = self.workspace.attr_workspace_id
        self.prometheus_endpoint = self.workspace.attr_prometheus_endpoint
        self.query_url = cdk.Fn.join("", [self.prometheus_endpoint, "api/v1/query"])
        self.remote_write_url = cdk.Fn.join("", [self.prometheus_endpoint, "api/v1/remote_write"])

    def grant_query(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read access to this workspace's series (PromQL queries, labels, metadata), nothing else."""
        return iam.Grant.add_to_principal(grantee=grantee, actions=list(QUERY_ACTIONS), resource_arns=[self.arn])


class CollectorSecurityGroup(Construct):
    """The security group of the collector's ENIs, and the rules that let it reach what it must: the Kubernetes API
    and the scraped ports, on the cluster security group (which the control plane's ENIs and every node carry, and
    with a node its pods: the VPC CNI gives pods the security groups of the node's primary interface). Nothing else
    in or out. Exposes ``security_group`` and ``ports``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        cluster: eks.ICluster,
        vpc: ec2.IVpc,
        prerequisites: Sequence[IDependable],
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "Resource",
            vpc=vpc,
            allow_all_outbound=False,
            description=f"{deployment.name}: ENIs of the managed metrics collector (Kubernetes API and /metrics only)",
        )
        self.ports = sorted({KUBERNETES_API_PORT, *scraped_port_numbers(deployment)})
        cluster_group = cluster.cluster_security_group_id
        for port in self.ports:
            self.security_group.add_egress_rule(
                ec2.Peer.security_group_id(cluster_group), ec2.Port.tcp(port), f"to the cluster on {port}"
            )
            ingress = ec2.CfnSecurityGroupIngress(
                self,
                f"ClusterFromCollector{port}",
                group_id=cluster_group,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                source_security_group_id=self.security_group.security_group_id,
                description=f"the managed metrics collector on {port}",
            )
            ingress.node.add_dependency(*prerequisites)


def collector_configuration(deployment: Deployment) -> str:
    """The scrape configuration as the scraper takes it: base64 of the YAML."""
    return base64.b64encode(yaml.safe_dump(scrape_config(deployment), sort_keys=False).encode()).decode()


class Observability(Construct):
    """Exposes ``workspace`` (a ``MetricsWorkspace``), ``scraper`` and ``collector_security_group``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ObservabilityProps) -> None:
        super().__init__(scope, construct_id)
        deployment = props.deployment
        config = deployment.observability
        self.workspace = MetricsWorkspace(
            self,
            "Metrics",
            alias=deployment.name,
            retention_days=config.retention_days,
            rules=rules_text(deployment.slo, config),
            customer_managed_key=config.customer_managed_key,
        )
        self.collector_security_group = CollectorSecurityGroup(
            self,
            "CollectorSecurityGroup",
            deployment=deployment,
            cluster=props.cluster,
            vpc=props.vpc,
            prerequisites=props.prerequisites,
        )
        self.scraper = aps.CfnScraper(
            self,
            "Collector",
            alias=f"{deployment.name}-serving",
            source=aps.CfnScraper.SourceProperty(
                eks_configuration=aps.CfnScraper.EksConfigurationProperty(
                    cluster_arn=props.cluster.cluster_arn,
                    subnet_ids=[subnet.subnet_id for subnet in props.collector_subnets],
                    security_group_ids=[self.collector_security_group.security_group.security_group_id],
                )
            ),
            destination=aps.CfnScraper.DestinationProperty(
                amp_configuration=aps.CfnScraper.AmpConfigurationProperty(workspace_arn=self.workspace.arn)
            ),
            scrape_configuration=aps.CfnScraper.ScrapeConfigurationProperty(
                configuration_blob=collector_configuration(deployment)
            ),
        )
        self.scraper.node.add_dependency(*props.prerequisites)
        cdk.CfnOutput(self, ObservabilityOutputs.WORKSPACE_ARN, value=self.workspace.arn)
        cdk.CfnOutput(self, ObservabilityOutputs.WORKSPACE_ID, value=self.workspace.workspace_id)
        cdk.CfnOutput(self, ObservabilityOutputs.PROMETHEUS_ENDPOINT, value=self.workspace.prometheus_endpoint)
        cdk.CfnOutput(self, ObservabilityOutputs.QUERY_URL, value=self.workspace.query_url)
        cdk.CfnOutput(self, ObservabilityOutputs.SCRAPER_ROLE_ARN, value=self.scraper.attr_role_arn)


class ObservabilityStack(cdk.Stack):
    """The Observability construct in a stack of its own (pdstack's app), as ``observability``; id "Default" keeps
    the logical ids the stack gave its resources when it built them itself."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ObservabilityProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.observability = built = Observability(self, "Default", props=props)
        self.workspace, self.scraper = built.workspace, built.scraper
        self.collector_security_group = built.collector_security_group
