"""The existing-cluster check's Lambda (inline ZipFile code, infra/deploy_check.py: one file, stdlib and boto3 only):
the facts the file declared, read back with eks:DescribeCluster, ListAddons, DescribeAddon and ec2:DescribeSubnets;
every difference named with the deployment-file field that declared it."""

import json
import re
import urllib.request

import boto3


def _version(text):
    found = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(p) for p in found.groups()) if found else None


def _policies_on(values):
    try:
        return str(json.loads(values or "{}").get("enableNetworkPolicy")).lower() == "true"
    except ValueError:
        return re.search(r"enableNetworkPolicy:\s*[\"']?true", values or "") is not None


def cluster_problems(eks, want):
    name = want["ClusterName"]
    try:
        cluster = eks.describe_cluster(name=name)["cluster"]
    except eks.exceptions.ResourceNotFoundException:
        return [f"no EKS cluster {name} (cluster.name) in this account and region"]
    vpc = cluster.get("resourcesVpcConfig", {})
    mode = cluster.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP")
    problems = []
    if cluster.get("status") != "ACTIVE":
        problems.append(f"the cluster is {cluster.get('status')}, not ACTIVE")
    if cluster.get("version") != want["KubernetesVersion"]:
        v = cluster.get("version")
        problems.append(f"the cluster runs {v}, not cluster.kubernetes_version {want['KubernetesVersion']}")
    if mode not in want["AuthenticationModes"]:
        problems.append(
            f"authentication mode is {mode} (cluster.existing.authentication_mode); pdstack needs one of "
            + ", ".join(want["AuthenticationModes"])
        )
    for key, field, declared in (
        ("vpcId", "network.existing.vpc_id", want["VpcId"]),
        ("clusterSecurityGroupId", "cluster.existing.security_group_id", want["SecurityGroupId"]),
    ):
        if vpc.get(key) != declared:
            problems.append(f"{key} is {vpc.get(key)}, the file says {field} {declared}")
    if not vpc.get("endpointPrivateAccess"):
        problems.append("the API endpoint has no private access (pdstack's kubectl runs in the VPC)")
    addons, token = [], None
    while True:
        page = eks.list_addons(clusterName=name, **({"nextToken": token} if token else {}))
        addons += page.get("addons", [])
        token = page.get("nextToken")
        if not token:
            break
    if "eks-pod-identity-agent" not in addons:
        problems.append("the eks-pod-identity-agent add-on is missing")
    if "vpc-cni" not in addons:
        problems.append("vpc-cni is not an EKS add-on: its version and network policy setting cannot be read")
        return problems
    cni = eks.describe_addon(clusterName=name, addonName="vpc-cni")["addon"]
    have, floor = _version(cni.get("addonVersion")), _version(want["VpcCniMinimum"])
    if have is None or have < floor:
        problems.append(
            f"vpc-cni is {cni.get('addonVersion')}, the file says cluster.existing.vpc_cni_version "
            f"{want['VpcCniVersion']}; the GPU nodes need {want['VpcCniMinimum']} or later"
        )
    if not _policies_on(cni.get("configurationValues")):
        problems.append("vpc-cni does not enforce NetworkPolicies (enableNetworkPolicy is not true)")
    return problems


def subnet_problems(ec2, want):
    declared = want["Subnets"]  # id -> [field, cidr]
    if not declared:  # EC2 refuses a filter without values
        return []
    found = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": sorted(declared)}])["Subnets"]
    seen = {s["SubnetId"]: s for s in found}
    problems = []
    for sid, (field, cidr) in sorted(declared.items()):
        s = seen.get(sid)
        if s is None:
            problems.append(f"{field} {sid} is not a subnet in this account and region")
        elif s["VpcId"] != want["VpcId"]:
            problems.append(f"{field} {sid} is in {s['VpcId']}, not network.existing.vpc_id {want['VpcId']}")
        elif s["CidrBlock"] != cidr:
            problems.append(f"{field} {sid} is {s['CidrBlock']}, the file says {cidr}")
    return problems


def claimed_problems(eks, want):
    problems = []
    for namespace, account, what in want["Claimed"]:
        query = {"clusterName": want["ClusterName"], "namespace": namespace}
        found = eks.list_pod_identity_associations(**query, **({"serviceAccount": account} if account else {}))
        taken = sorted({a["serviceAccount"] for a in found.get("associations", [])})
        if taken:
            problems.append(
                f"{what}: namespace {namespace} already has Pod Identity associations ({', '.join(taken)}): another "
                "pdstack deployment or app uses it; pdstack takes one deployment per cluster (several models go in "
                "its models:), or set cluster.addons / workloads.namespace"
            )
    return problems


def response(event, problems):
    return {
        "Status": "FAILED" if problems else "SUCCESS",
        "Reason": "; ".join(problems)[:3000] or "the cluster has what pdstack needs",
        "PhysicalResourceId": "existing-cluster-check",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {},
    }


def outcome(event, eks, ec2):
    try:
        if event["RequestType"] == "Delete":
            return response(event, [])
        want = event["ResourceProperties"]
        problems = cluster_problems(eks, want) + subnet_problems(ec2, want)
        # On the first deploy only: afterwards the associations are this deployment's own.
        if event["RequestType"] == "Create" and not problems:
            problems = claimed_problems(eks, want)
        return response(event, problems)
    except Exception as error:
        return response(event, [f"the existing-cluster check could not run: {error}"])


def handler(event, context):
    body = json.dumps(outcome(event, boto3.client("eks"), boto3.client("ec2"))).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"content-type": ""})
    urllib.request.urlopen(request, timeout=30).close()
