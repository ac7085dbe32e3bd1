"""Node autoscaling on EKS node groups: the Cluster Autoscaler (pinned) finds only the groups it may resize, knows
what a GPU node offers before one exists (so a worker pod can make a group grow from zero), runs on the system
nodes, and may write to this cluster's autoscaled Auto Scaling groups only."""

from __future__ import annotations

import json

from infra.cluster.addons import cluster_autoscaler
from infra.workload_names import ACCELERATOR_LABEL, SYSTEM_POOL
from infra.workloads.stack import serving_objects
from runtime.router.contract import ROLE_LABEL
from tests.support.rehearsal import HUGEPAGES, eks_nodes
from tests.support.synthesis import Synthesized

TEMPLATE = "k8s.io/cluster-autoscaler/node-template/resources/"


def resolved(value: object) -> str:
    """A CloudFormation string, with every reference inside it (cluster name, region) replaced by TOKEN."""
    if isinstance(value, str):
        return value
    assert isinstance(value, dict) and "Fn::Join" in value, value
    return "".join(part if isinstance(part, str) else "TOKEN" for part in value["Fn::Join"][1])


def asg_tags(synth: Synthesized) -> list[dict[str, str]]:
    """The tags each tagging custom resource writes (its SDK call, as JSON, in the Update property)."""
    found = []
    assert synth.gpu_nodes is not None  # the autoscaler lives with the node groups
    for resource in synth.gpu_nodes.find_resources("Custom::AWS").values():
        call = json.loads(resolved(resource["Properties"]["Update"]))
        if call["action"] == "createOrUpdateTags":
            found.append({tag["Key"]: tag["Value"] for tag in call["parameters"]["Tags"]})
    return found


def test_the_chart_is_pinned_on_the_system_nodes_and_finds_only_tagged_groups(default: Synthesized) -> None:
    assert default.gpu_nodes is not None
    (chart,) = [
        r["Properties"]
        for r in default.gpu_nodes.find_resources("Custom::AWSCDK-EKS-HelmChart").values()
        if r["Properties"]["Chart"] == "cluster-autoscaler"
    ]
    assert chart["Version"] == cluster_autoscaler(default.deployment.cluster.kubernetes_version).version
    values = json.loads(resolved(chart["Values"]))
    assert values["nodeSelector"] == SYSTEM_POOL
    assert "pdstack.io/autoscaled" in values["autoDiscovery"]["tags"]


def test_a_worker_pod_fits_the_node_template_of_its_group(default: Synthesized) -> None:
    """Scaling up from zero, the autoscaler simulates the pending pod on a template node built from these tags: the
    pod's extended-resource requests must fit, or the group never grows."""
    (tags,) = asg_tags(default)
    assert tags["pdstack.io/autoscaled"] == "true"
    for obj in serving_objects(default.deployment, "image"):
        if obj["kind"] != "Deployment" or ROLE_LABEL not in obj["metadata"]["labels"]:
            continue
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        for resource in ("nvidia.com/gpu", "vpc.amazonaws.com/efa", "hugepages-2Mi"):
            wanted = container["resources"]["requests"][resource]
            offered = tags[TEMPLATE + resource]
            assert _quantity(wanted) <= _quantity(offered), (resource, wanted, offered)


def test_capacity_blocks_stay_fixed(capacity_block: Synthesized) -> None:
    assert asg_tags(capacity_block) == []  # no pdstack.io/autoscaled tag: the autoscaler never discovers the group


def test_writes_only_on_this_clusters_autoscaled_groups(default: Synthesized) -> None:
    assert default.gpu_nodes is not None
    statements = [
        s
        for p in default.gpu_nodes.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "autoscaling:SetDesiredCapacity" in json.dumps(s["Action"])
    ]
    (statement,) = statements
    condition = statement["Condition"]["StringEquals"]
    assert set(condition) == {"aws:ResourceTag/eks:cluster-name", "aws:ResourceTag/pdstack.io/autoscaled"}
    assert sorted(statement["Action"]) == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]


def _quantity(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def test_the_node_template_claims_what_a_real_node_of_the_group_has(default: Synthesized) -> None:
    """The template is what the autoscaler believes a new node offers: more than the real node (its launch
    template's EFA interfaces, the hugepages its user data reserves) and it adds nodes the pending pod still does not
    fit; less, and the group never grows for a pod that would fit."""
    (tags,) = asg_tags(default)
    ((node, spec),) = [v for v in eks_nodes(default).values() if v[1] is not None]
    assert _quantity(tags[TEMPLATE + "hugepages-2Mi"]) == node.capacity[HUGEPAGES]
    assert int(tags[TEMPLATE + "vpc.amazonaws.com/efa"]) == node.capacity["vpc.amazonaws.com/efa"]
    assert int(tags[TEMPLATE + "nvidia.com/gpu"]) == spec.gpus


def test_gpu_nodes_carry_the_accelerator_label_and_their_template_says_so(default: Synthesized) -> None:
    """Without k8s.amazonaws.com/accelerator the autoscaler sees a new GPU node with no GPUs while the device plugin
    registers, and adds another p5 (Cluster Autoscaler AWS README, "Special note on GPU instances")."""
    assert default.gpu_nodes is not None
    groups = default.gpu_nodes.find_resources("AWS::EKS::Nodegroup")
    assert groups
    labels = [g["Properties"]["Labels"].get(ACCELERATOR_LABEL) for g in groups.values()]
    assert labels == ["nvidia-h100"] * len(groups)  # default.yaml's groups are p5.48xlarge
    for tags in asg_tags(default):
        assert tags[f"k8s.io/cluster-autoscaler/node-template/label/{ACCELERATOR_LABEL}"] == "nvidia-h100"
