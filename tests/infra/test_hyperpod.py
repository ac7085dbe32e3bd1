"""The HyperPod stack: cluster properties, the EKS prerequisites HyperPod checks, dependency order, least privilege."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from aws_cdk import CfnElement

from infra.cluster.addons import managed_addons
from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node
from infra.hyperpod.dependencies import HEALTH_AGENT_ACCOUNTS, HEALTH_AGENT_REPOSITORY, HEALTH_AGENT_TAG
from infra.hyperpod.stack import LIFECYCLE_DIR, NODE_SETTINGS_FILE
from tests.support.synthesis import SynthesisCache, Synthesized


def hyperpod_cluster(synth: Synthesized) -> tuple[str, Mapping[str, Any]]:
    assert synth.hyperpod is not None
    ((logical_id, resource),) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").items()
    return logical_id, resource


def resiliency_manifest(synth: Synthesized) -> tuple[str, str]:
    ((logical_id, resource),) = synth.hyperpod.find_resources("Custom::AWSCDK-EKS-KubernetesResource").items()
    manifest = resource["Properties"]["Manifest"]
    text = json.dumps(manifest)  # Fn::Join of the JSON with the image's region mapping spliced in
    return logical_id, text


def test_cluster_properties(hyperpod: Synthesized) -> None:
    _, cluster = hyperpod_cluster(hyperpod)
    props = cluster["Properties"]
    assert props["NodeRecovery"] == "Automatic" and props["NodeProvisioningMode"] == "Continuous"
    assert "ClusterArn" in json.dumps(props["Orchestrator"]["Eks"])
    (group,) = props["InstanceGroups"]
    assert group["InstanceType"] == "ml.p5.48xlarge" and group["InstanceCount"] == 2 and group["ThreadsPerCore"] == 1
    assert group["OnStartDeepHealthChecks"] == ["InstanceStress", "InstanceConnectivity"]
    assert group["InstanceStorageConfigs"] == [{"EbsVolumeConfig": {"VolumeSizeInGB": 500}}]
    assert group["LifeCycleConfig"]["OnCreate"] == "on_create.sh"
    (configured,) = hyperpod.deployment.hyperpod.instance_groups
    assert group["KubernetesConfig"]["Taints"] == [
        {"Effect": t.effect, "Key": t.key, "Value": t.value} for t in configured.taints
    ]
    assert group["KubernetesConfig"]["Labels"]["pdstack.io/efa"] == "true"


def test_gpu_subnet_and_efa_security_group(hyperpod: Synthesized) -> None:
    _, cluster = hyperpod_cluster(hyperpod)
    vpc = cluster["Properties"]["VpcConfig"]
    stack = hyperpod.stacks.hyperpod
    assert vpc["Subnets"] == [stack.resolve(hyperpod.stacks.network.gpu_subnet.subnet_id)]
    efa_sg = stack.resolve(hyperpod.stacks.cluster.efa_security_group.security_group_id)
    assert efa_sg in vpc["SecurityGroupIds"]


def test_resiliency_objects_are_created_before_the_cluster(hyperpod: Synthesized) -> None:
    _, cluster = hyperpod_cluster(hyperpod)
    manifest_id, _ = resiliency_manifest(hyperpod)
    assert manifest_id in cluster["DependsOn"]
    deployments = hyperpod.hyperpod.find_resources("Custom::CDKBucketDeployment")
    assert set(deployments) <= set(cluster["DependsOn"])
    # and the execution role's inline policy: instances started before it could pull nothing
    role_id = hyperpod.stacks.hyperpod.get_logical_id(
        cast(CfnElement, hyperpod.stacks.hyperpod.execution_role.node.default_child)
    )
    policies = [
        k
        for k, p in hyperpod.hyperpod.find_resources("AWS::IAM::Policy").items()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    assert policies and set(policies) <= set(cluster["DependsOn"])


def test_health_agent_runs_on_the_hyperpod_gpu_nodes(hyperpod: Synthesized) -> None:
    _, text = resiliency_manifest(hyperpod)
    assert '\\"kind\\":\\"DaemonSet\\"' in text and "health-monitoring-agent" in text
    assert "ml.p5.48xlarge" in text and HEALTH_AGENT_TAG in text
    assert "Fn::FindInMap" in text  # the image's account follows the deployed region
    mapping = hyperpod.hyperpod.to_json()["Mappings"]["HealthAgentAccounts"]
    assert {r: v["account"] for r, v in mapping.items()} == HEALTH_AGENT_ACCOUNTS


def test_lifecycle_bucket_is_named_for_the_managed_policy(hyperpod: Synthesized) -> None:
    bucket = next(
        r for r in hyperpod.hyperpod.find_resources("AWS::S3::Bucket").values() if "BucketName" in r["Properties"]
    )
    name = bucket["Properties"]["BucketName"]["Fn::Join"]
    assert name[0] == "-" and name[1][0].startswith("sagemaker-")
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"} and "LoggingConfiguration" in props
    assert props["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_execution_role_least_privilege(hyperpod: Synthesized) -> None:
    role_id = hyperpod.stacks.hyperpod.get_logical_id(
        cast(CfnElement, hyperpod.stacks.hyperpod.execution_role.node.default_child)
    )
    role = hyperpod.hyperpod.to_json()["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    managed = json.dumps(role["ManagedPolicyArns"])
    assert "AmazonSageMakerClusterInstanceRolePolicy" in managed and "AmazonEKS_CNI_Policy" in managed
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in hyperpod.hyperpod.find_resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    (statements,) = policies
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {
        "ec2:CreateNetworkInterface",
        "ecr:BatchGetImage",
        "eks-auth:AssumeRoleForPodIdentity",
        "s3:GetObject",
        "s3:ListBucket",
    } <= actions
    assert not any(a.endswith("*") for a in actions)
    for statement in statements:
        if "eks-auth:AssumeRoleForPodIdentity" in json.dumps(statement["Action"]):
            assert statement["Resource"] != "*"
        if statement["Action"] == "s3:GetObject":
            assert "/lifecycle/*" in json.dumps(statement["Resource"])


def test_eks_prerequisites_hyperpod_checks(hyperpod: Synthesized) -> None:
    (cluster,) = hyperpod.cluster.find_resources("AWS::EKS::Cluster").values()
    major, minor = (int(x) for x in cluster["Properties"]["Version"].split("."))
    assert (1, 30) <= (major, minor) <= (1, 35)
    assert cluster["Properties"]["AccessConfig"]["AuthenticationMode"] in ("API", "API_AND_CONFIG_MAP")
    cni = tuple(
        int(x) for x in managed_addons(cluster["Properties"]["Version"])["vpc-cni"].lstrip("v").split("-")[0].split(".")
    )
    assert cni >= (1, 18, 3)
    private = hyperpod.network.find_resources("AWS::EC2::Subnet", {"Properties": {"MapPublicIpOnLaunch": False}})
    _, hp = hyperpod_cluster(hyperpod)
    used = {json.dumps(s) for s in hp["Properties"]["VpcConfig"]["Subnets"]}
    assert all(any(logical in s for logical in private) for s in used)


def test_no_gpu_node_groups_when_hyperpod_provides_the_gpus(hyperpod: Synthesized) -> None:
    groups = hyperpod.cluster.find_resources("AWS::EKS::Nodegroup")
    assert len(groups) == 1  # the system node group only
    hyperpod.cluster.resource_count_is("AWS::EC2::LaunchTemplate", 0)


def test_lifecycle_script_is_valid_bash() -> None:
    script = LIFECYCLE_DIR / "on_create.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "/var/log/provision/provisioning.log" in text and "/opt/dlami/nvme" in text


def test_lifecycle_script_leaves_containerd_config_to_the_node_bootstrap() -> None:
    """The bootstrap (re)writes /etc/containerd/config.toml and it may not exist yet when the script runs: the state
    moves by bind mounts, the way that does not depend on that file."""
    text = (LIFECYCLE_DIR / "on_create.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "/etc/containerd" not in code
    assert "bind_state /var/lib/containerd var-lib-containerd.mount" in text  # systemd's unit name for that path


def test_lifecycle_script_reads_the_settings_the_stack_writes(hyperpod: Synthesized) -> None:
    (settings,) = hyperpod.outdir.glob(f"asset.*/{NODE_SETTINGS_FILE}")
    variables = dict(line.split("=", 1) for line in settings.read_text().splitlines())
    expected = hugepages_2mi_pages_per_node(hyperpod.deployment, "p5.48xlarge")
    assert variables == {"HUGEPAGES_2MI_PAGES": str(expected)} and expected > 0
    text = (LIFECYCLE_DIR / "on_create.sh").read_text()
    assert f'"$HERE/{NODE_SETTINGS_FILE}"' in text
    assert all(f"${name}" in text for name in variables)


def test_nodes_may_pull_the_aws_owned_images(hyperpod: Synthesized) -> None:
    """The health agent (one AWS account per region), the EKS add-ons and the EFA plugin live in AWS's registries;
    AmazonSageMakerClusterInstanceRolePolicy grants no ECR pull, so the execution role must."""
    role_id = hyperpod.stacks.hyperpod.get_logical_id(
        cast(CfnElement, hyperpod.stacks.hyperpod.execution_role.node.default_child)
    )
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in hyperpod.hyperpod.find_resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    images = [
        f"arn:aws:ecr:us-east-2:{HEALTH_AGENT_ACCOUNTS['us-east-2']}:repository/{HEALTH_AGENT_REPOSITORY}",
        "arn:aws:ecr:us-west-2:602401143452:repository/eks/aws-efa-k8s-device-plugin",
        "arn:aws:ecr:us-east-2:602401143452:repository/eks/kube-proxy",
    ]
    for image in images:
        for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
            assert any(
                action in s["Action"]
                and any(
                    isinstance(r, str) and fnmatch.fnmatchcase(image, r)
                    for r in ([s["Resource"]] if isinstance(s["Resource"], (str, dict)) else s["Resource"])
                )
                for s in policy
            ), (image, action)


def test_hyperpod_in_a_concrete_environment_is_nag_clean(synthesized: SynthesisCache) -> None:
    from infra.config import parse_deployment
    from tests.support.synthesis import load_yaml

    data = load_yaml("hyperpod.yaml")
    data.update(account="123456789012", region="us-east-2")
    data["network"]["availability_zones"] = ["us-east-2a", "us-east-2b"]
    # with HyperPod's managed Karpenter node autoscaling, which needs groups without deep health checks
    data["hyperpod"]["node_autoscaling"] = True
    data["hyperpod"]["instance_groups"][0]["deep_health_checks"] = []
    synth = synthesized.get(parse_deployment(data))  # raises on any finding
    (plugin,) = [p for p in synth.validation_report()["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["violations"] == []

    assert synth.hyperpod is not None
    (cluster,) = synth.hyperpod.find_resources("AWS::SageMaker::Cluster").values()
    props = cluster["Properties"]
    # the properties cfn-lint's AWS::SageMaker::Cluster schema defines for it
    assert props["AutoScaling"] == {"Mode": "Enable", "AutoScalerType": "Karpenter"}
    assert props["NodeProvisioningMode"] == "Continuous"  # HyperPod's autoscaling runs on continuous provisioning
    assert props["InstanceGroups"][0]["InstanceCount"] == 0  # Karpenter grows a group from zero
    (role_id,) = [
        k
        for k, v in synth.hyperpod.find_resources("AWS::IAM::Role").items()
        if "hyperpod.sagemaker.amazonaws.com" in json.dumps(v)
    ]
    assert props["ClusterRole"] == {"Fn::GetAtt": [role_id, "Arn"]}
    policies = [
        v["Properties"]["PolicyDocument"]["Statement"]
        for v in synth.hyperpod.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in v["Properties"]["Roles"]
    ]
    assert policies == [
        [
            {
                "Action": ["sagemaker:BatchAddClusterNodes", "sagemaker:BatchDeleteClusterNodes"],
                "Effect": "Allow",
                "Resource": {
                    "Fn::GetAtt": [next(iter(synth.hyperpod.find_resources("AWS::SageMaker::Cluster"))), "ClusterArn"]
                },
            }
        ]
    ]


def test_hyperpod_node_autoscaling_refuses_what_it_does_not_support() -> None:
    from infra.config import DeploymentError, parse_deployment
    from tests.support.synthesis import load_yaml

    data = load_yaml("hyperpod.yaml")
    data["hyperpod"]["node_autoscaling"] = True
    with pytest.raises(DeploymentError, match=r"deep_health_checks: \[\]"):
        parse_deployment(data)


def test_hyperpod_node_pool_is_capped_at_the_groups_counts() -> None:
    from infra.config import parse_deployment
    from infra.hyperpod.stack import hyperpod_node_pool
    from tests.support.synthesis import load_yaml

    config = parse_deployment(load_yaml("hyperpod.yaml")).hyperpod
    assert config is not None
    node_class, pool = hyperpod_node_pool(config)
    assert node_class["spec"]["instanceGroups"] == ["p5"]
    assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] == node_class["metadata"]["name"]
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "16"}  # two ml.p5.48xlarge of 8 GPUs


SANDBOX = r"""
set -e
T=$1
# Private copies of the directories the script writes; everything else of /etc stays visible through symlinks.
mkdir -p "$T/real-etc"
mount --bind /etc "$T/real-etc"
mount -t tmpfs none /etc
for entry in "$T"/real-etc/* "$T"/real-etc/.[!.]*; do
  [ -e "$entry" ] || continue
  case "${entry##*/}" in systemd|sysctl.d|containerd) ;; *) ln -s "$entry" "/etc/${entry##*/}" ;; esac
done
mkdir -p /etc/systemd/system /etc/sysctl.d          # and no /etc/containerd at all
for dir in /opt /var/lib /var/log; do mount -t tmpfs none "$dir"; done
mkdir -p /opt/dlami/nvme /var/lib/containerd/io.containerd.content.v1.content /var/lib/kubelet/pods
echo layer > /var/lib/containerd/io.containerd.content.v1.content/blob
echo pod > /var/lib/kubelet/pods/state
cd "$T/lifecycle"
PATH="$T/bin:$PATH" bash ./on_create.sh
echo "--- sysctl.d"; cat /etc/sysctl.d/90-pdstack-hugepages.conf
echo "--- units"; cat /etc/systemd/system/var-lib-containerd.mount /etc/systemd/system/var-lib-kubelet.mount
echo "--- nvme"; cat /opt/dlami/nvme/containerd/io.containerd.content.v1.content/blob /opt/dlami/nvme/kubelet/pods/state
"""


def test_lifecycle_script_on_a_node_without_containerd_config(tmp_path: Path, hyperpod: Synthesized) -> None:
    """Run on_create.sh as HyperPod does (from a copy of the lifecycle prefix, as root) in a private mount namespace:
    systemctl, mountpoint and sysctl are recorders, /opt/dlami/nvme counts as mounted, /etc/containerd does not
    exist yet. It must succeed, reserve the hugepages the stack wrote, and move the state by bind mounts."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to run the lifecycle script in a sandbox")
    lifecycle = tmp_path / "lifecycle"
    lifecycle.mkdir()
    shutil.copy(LIFECYCLE_DIR / "on_create.sh", lifecycle)
    (settings,) = hyperpod.outdir.glob(f"asset.*/{NODE_SETTINGS_FILE}")
    shutil.copy(settings, lifecycle)
    calls = tmp_path / "calls"
    stubs = {
        "systemctl": f'echo "systemctl $*" >> {calls}',
        "sysctl": f'echo "sysctl $*" >> {calls}',
        "mountpoint": '[ "${@: -1}" = /opt/dlami/nvme ]',
        "sleep": "true",
    }
    (tmp_path / "bin").mkdir()
    for name, body in stubs.items():
        stub = tmp_path / "bin" / name
        stub.write_text(f"#!/bin/bash\n{body}\n")
        stub.chmod(0o755)
    result = subprocess.run(
        ["unshare", "-rm", "bash", "-c", SANDBOX, "sandbox", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = hugepages_2mi_pages_per_node(hyperpod.deployment, "p5.48xlarge")
    out = result.stdout
    assert f"vm.nr_hugepages = {pages}" in out.split("--- sysctl.d")[1]
    assert "What=/opt/dlami/nvme/containerd\nWhere=/var/lib/containerd" in out
    assert "What=/opt/dlami/nvme/kubelet\nWhere=/var/lib/kubelet" in out
    assert "layer\npod" in out.split("--- nvme")[1]  # the state moved with them
    recorded = calls.read_text().splitlines()
    assert f"sysctl -w vm.nr_hugepages={pages}" in recorded
    assert recorded.index("systemctl enable --now var-lib-containerd.mount") < recorded.index(
        "systemctl start containerd"
    )
