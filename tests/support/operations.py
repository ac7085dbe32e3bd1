"""Operating a deployment in tests: ``Deployed`` creates in moto what ``cdk deploy`` would leave behind for a
deployment (the stacks with their outputs, the EKS cluster and node groups, the ECR image and its scan, the CodeBuild
project with a build, and the HyperPod cluster when there is one); deployment files with changes; the CLI run in
process. The moto fixtures are in tests/infra/operations/conftest.py."""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

from infra.__main__ import main
from infra.config import Deployment, parse_deployment
from infra.stack_outputs import (
    ClusterOutputs,
    HyperPodOutputs,
    ImageOutputs,
    ObservabilityOutputs,
    WorkloadsOutputs,
    stack_name,
)

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
IMAGE_TAG = "3f9c2a7d1e5b8c4a6f02"


def deployment_file(tmp_path: Path, name: str = "default.yaml", **changes: Any) -> Path:
    """A copy of deployments/<name> with top-level keys changed, written into tmp_path."""
    data = copy.deepcopy(yaml.safe_load((REPO / "deployments" / name).read_text()))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / f"test-{name}"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return Run(code=code, out=out.getvalue(), err=err.getvalue())


def _template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


class Deployed:
    """Creates, in moto, the resources of one deployment (all parts, or only some)."""

    def __init__(self, deployment: Deployment, region: str = REGION) -> None:
        self.d = deployment
        self.region = region
        self.session = boto3.Session(region_name=region)
        self.cluster_name = deployment.cluster.name
        self.repository = deployment.image.repository_name(deployment.name)
        self.image_uri = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{self.repository}:{IMAGE_TAG}"
        self.project = f"ImageBuild{deployment.name.replace('-', '')}-A1b2C3d4"
        self.nodegroups: dict[str, str] = {}  # deployment's group name -> EKS node group name

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def everything(self, push_image: bool = True) -> Deployed:
        if self.d.network.existing is None:  # an existing VPC has no network stack
            self.stack(
                "network", VpcId="vpc-0a1b2c3d", GpuSubnetId="subnet-0a1b", GpuAvailabilityZone=f"{self.region}a"
            )
        self.stack(
            "image",
            **{
                ImageOutputs.REPOSITORY_URI: self.image_uri.rsplit(":", 1)[0],
                ImageOutputs.IMAGE_URI: self.image_uri,
                ImageOutputs.BUILD_PROJECT: self.project,
            },
        )
        self.stack(
            "cluster",
            **{
                ClusterOutputs.CLUSTER_NAME: self.cluster_name,
                ClusterOutputs.CLUSTER_ARN: self.cluster_arn,
                ClusterOutputs.EFA_SECURITY_GROUP_ID: "sg-0e1f",
                ClusterOutputs.UPDATE_KUBECONFIG: (
                    f"aws eks update-kubeconfig --name {self.cluster_name} --region {self.region}"
                ),
            },
        )
        if self.d.hyperpod is None:
            self.stack("gpu-nodes")
        self.eks_cluster()
        self.image(push=push_image)
        self.build()
        if self.d.hyperpod is not None:
            self.stack(
                "hyperpod",
                **{
                    HyperPodOutputs.CLUSTER_NAME: self.d.hyperpod.cluster_name,
                    HyperPodOutputs.CLUSTER_ARN: f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:cluster/x",
                    HyperPodOutputs.LIFECYCLE_BUCKET: (
                        f"sagemaker-{self.d.hyperpod.cluster_name}-{ACCOUNT}-{self.region}"
                    ),
                },
            )
            self.hyperpod()
        self.stack(
            "workloads",
            **{
                WorkloadsOutputs.NAMESPACE: self.d.workloads.namespace,
                WorkloadsOutputs.ROUTER_SERVICE: f"pdstack-router.{self.d.workloads.namespace}.svc",
            },
        )
        if self.d.observability.enabled:
            workspace = f"arn:aws:aps:{self.region}:{ACCOUNT}:workspace/ws-0a1b"
            self.stack(
                "observability",
                **{ObservabilityOutputs.WORKSPACE_ARN: workspace, ObservabilityOutputs.WORKSPACE_ID: "ws-0a1b"},
            )
        return self

    @property
    def cluster_arn(self) -> str:
        return f"arn:aws:eks:{self.region}:{ACCOUNT}:cluster/{self.cluster_name}"

    def stack(self, part: str, **outputs: str) -> None:
        self.client("cloudformation").create_stack(
            StackName=stack_name(self.d.name, part), TemplateBody=_template(outputs)
        )

    def eks_cluster(self) -> None:
        eks = self.client("eks")
        access = self.d.cluster.endpoint_access
        eks.create_cluster(
            name=self.cluster_name,
            version=self.d.cluster.kubernetes_version,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/cluster",
            resourcesVpcConfig={
                "subnetIds": ["subnet-0a1b"],
                "endpointPublicAccess": access != "private",
                "endpointPrivateAccess": access != "public",
            },
        )
        groups = [
            ("SystemNodes8C1A9F2E-Xy7bQ3", {"pdstack.io/pool": "system"}, self.d.cluster.system_node_count, "ON_DEMAND")
        ]
        if self.d.cluster.existing is not None:  # the platform's own nodes instead of pdstack's system node group
            platform = self.d.cluster.existing.system_nodes
            groups = [("platform-general", dict(platform.node_selector), platform.count, "ON_DEMAND")]
        for group in self.d.gpu_node_groups:
            name = f"Gpu{group.name}Nodes4D2E7A1B-Qw8eR5"
            self.nodegroups[group.name] = name
            capacity = "CAPACITY_BLOCK" if group.capacity.type == "capacity-block" else "ON_DEMAND"
            groups.append(
                (name, {"pdstack.io/gpu": "true", "pdstack.io/node-group": group.name}, group.desired_size, capacity)
            )
        for name, labels, desired, capacity in groups:
            eks.create_nodegroup(
                clusterName=self.cluster_name,
                nodegroupName=name,
                subnets=["subnet-0a1b"],
                labels=labels,
                nodeRole=f"arn:aws:iam::{ACCOUNT}:role/node",
                capacityType=capacity,
                scalingConfig={"minSize": 0, "desiredSize": desired, "maxSize": max(desired, 1)},
            )

    def image(self, push: bool = True, severities: dict[str, int] | None = None) -> None:
        ecr = self.client("ecr")
        ecr.create_repository(repositoryName=self.repository)
        if not push:
            return
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [],
        }
        ecr.put_image(repositoryName=self.repository, imageManifest=json.dumps(manifest), imageTag=IMAGE_TAG)
        ecr.start_image_scan(repositoryName=self.repository, imageId={"imageTag": IMAGE_TAG})

    def build(self) -> None:
        codebuild = self.client("codebuild")
        codebuild.create_project(
            name=self.project,
            source={"type": "S3", "location": "cdk-assets/context.zip"},
            artifacts={"type": "NO_ARTIFACTS"},
            serviceRole=f"arn:aws:iam::{ACCOUNT}:role/build",
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_LARGE",
                "privilegedMode": True,
            },
        )
        codebuild.start_build(projectName=self.project)

    def hyperpod(self) -> None:
        assert self.d.hyperpod is not None
        groups = [
            {
                "InstanceGroupName": g.name,
                "InstanceType": "ml.p5.48xlarge",
                "InstanceCount": g.count,
                "ExecutionRole": f"arn:aws:iam::{ACCOUNT}:role/hyperpod",
                "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-lifecycle/lifecycle", "OnCreate": "on_create.sh"},
                "ThreadsPerCore": g.threads_per_core,
            }
            for g in self.d.hyperpod.instance_groups
        ]
        self.client("sagemaker").create_cluster(
            ClusterName=self.d.hyperpod.cluster_name,
            InstanceGroups=groups,
            Orchestrator={"Eks": {"ClusterArn": self.cluster_arn}},
        )


def load(path: Path) -> Deployment:
    return parse_deployment(yaml.safe_load(path.read_text()), str(path))
