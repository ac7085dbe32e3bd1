"""cdk-nag registration and every acknowledgement pdstack makes, each with the reason a reviewer can check.

Acknowledgements are as narrow as cdk-nag allows: the exact finding (policy or action) on the construct that
carries it, never a whole rule on a whole stack.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import custom_resources as cr
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.cluster.eks_checks import EksClusterChecks
from infra.cluster.imported import ImportedCluster
from infra.cluster.load_balancer_controller import LoadBalancerController
from infra.cluster.stack import InferenceCluster
from infra.gpu_capacity.gpu_zone.check import GpuZoneCheck
from infra.gpu_capacity.stack import GpuNodeGroupCapacity
from infra.hyperpod.stack import LIFECYCLE_PREFIX, HyperPodCapacity
from infra.image.stack import ServingImage
from infra.network.stack import Network, NetworkStack
from infra.workloads.stack import ServingUnitWorkloads

NODE_ROLE_POLICIES = {
    "AmazonEKSWorkerNodePolicy": "the EKS node role policy EKS documents for managed node groups (node registration)",
    "AmazonEKS_CNI_Policy": "the VPC CNI assigns pod IPs and ENIs from the node role, as EKS documents",
    "AmazonEC2ContainerRegistryReadOnly": "nodes pull the serving and add-on images from ECR; read-only",
}
LAMBDA_BASIC = "service-role/AWSLambdaBasicExecutionRole"
LAMBDA_BASIC_REASON = "lets the function write its own CloudWatch logs; nothing more"


def register_checks(app: cdk.App) -> None:
    """AwsSolutions rules over the whole app, our EKS checks, and the acknowledgements below for every pdstack
    construct in it. Call it once the app's constructs are built (a user's own app included)."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    cdk.Aspects.of(app).add(EksClusterChecks())
    acknowledge(app)


def _ack(scope: IConstruct, finding: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-{finding}", reason=reason))


def _managed(policy: str) -> str:
    return f"IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"


def acknowledge(scope: IConstruct) -> None:
    """Acknowledge the findings of every pdstack construct under ``scope``, wherever a user placed it."""
    for construct in scope.node.find_all():
        if isinstance(construct, NetworkStack):
            _acknowledge_named_zones(construct)
        elif isinstance(construct, Network):
            _acknowledge_network(construct)
        elif isinstance(construct, ServingImage):
            _acknowledge_image(construct)
        elif isinstance(construct, InferenceCluster):
            _acknowledge_cluster(construct)
        elif isinstance(construct, ImportedCluster):
            _acknowledge_imported_cluster(construct)
        elif isinstance(construct, GpuNodeGroupCapacity):
            _acknowledge_gpu_node_groups(construct)
        elif isinstance(construct, HyperPodCapacity):
            _acknowledge_hyperpod(construct)
        elif isinstance(construct, LoadBalancerController):
            _acknowledge_load_balancer_controller(construct)
        elif isinstance(construct, ServingUnitWorkloads):
            _acknowledge_serving_unit(construct)


def _acknowledge_gpu_node_groups(capacity: GpuNodeGroupCapacity) -> None:
    for group in capacity.gpu_node_groups.values():
        for policy, reason in NODE_ROLE_POLICIES.items():
            _ack(group.nodegroup, _managed(policy), reason)
    if capacity.node_autoscaler is not None:
        _acknowledge_node_autoscaler(capacity)
    if capacity.zone_check is not None:
        _acknowledge_zone_check(capacity.zone_check)


def _acknowledge_named_zones(stack: NetworkStack) -> None:
    if stack.configured_zones:
        cdk.Validations.of(stack).acknowledge(
            cdk.Acknowledgment(
                id="CloudFormation-Validate::W3010",
                reason="the deployment names its zones on purpose: the GPU capacity (a capacity block or reservation) "
                "exists in one named zone, and EFA does not cross zones",
            )
        )


def _acknowledge_network(network: Network) -> None:
    for endpoint in network.interface_endpoints:
        _ack(
            endpoint,
            "EC23",
            "interface endpoint security groups admit HTTPS from the VPC CIDR only; cdk-nag cannot "
            "resolve the Fn::GetAtt VPC CIDR at synth time and reports it as open",
        )


def _acknowledge_image(image: ServingImage) -> None:
    project = image.project
    _ack(
        project,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; it is the only action granted on *",
    )
    for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
        _ack(project, f"IAM5[Action::{action}]", "CDK's grant on the build's own KMS key (resource is that key's ARN)")
    for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*"):
        _ack(project, f"IAM5[Action::{action}]", "CDK's read grant on the build-context asset in the bootstrap bucket")
    project_id = _logical_id(project)
    _ack(
        project,
        f"IAM5[Resource::{_arn(image, 'codebuild')}:report-group/<{project_id}>-*]",
        "CodeBuild's default report-group grant, scoped to this project's name",
    )
    _ack(
        project,
        f"IAM5[Resource::{_arn(image, 'logs')}:log-group:/aws/codebuild/<{project_id}>:*]",
        "CodeBuild's default log-stream grant, scoped to this project's log group",
    )
    _ack(
        project,
        f"IAM5[Resource::{_arn(image, 'ecr')}:repository/{image.pull_through_prefix}/*]",
        "the ghcr.io pull-through cache creates its repositories under this prefix on first pull",
    )

    waiter = image.node.find_child("BuildWaiter")
    for scope in (
        image.node.find_child("BuildWaiter-on_event"),
        image.node.find_child("BuildWaiter-is_complete"),
        waiter,
    ):
        _ack(scope, _managed(LAMBDA_BASIC), LAMBDA_BASIC_REASON)
    for fn in (
        "BuildWaiter-on_event",
        "BuildWaiter-is_complete",
        "BuildWaiter/framework-isComplete",
        "BuildWaiter/framework-onTimeout",
    ):
        target = _logical_id_of_path(image, fn)
        _ack(
            waiter,
            f"IAM5[Resource::<{target}.Arn>:*]",
            "the Provider framework invokes any version of its own handler functions (the ARN is the function's own)",
        )
    _ack(
        waiter,
        "IAM5[Resource::*]",
        "Step Functions log delivery (logs:CreateLogDelivery and friends) has no "
        "resource-level permissions; the waiter's role gets those actions only",
    )
    _ack(waiter, "SF2", "the Provider framework's waiter state machine only polls the build; X-Ray adds nothing there")


def _acknowledge_cluster(built: InferenceCluster) -> None:
    cluster = built.cluster
    _ack(cluster, _managed("AmazonEKSClusterPolicy"), "the EKS service role policy EKS requires for the control plane")
    for policy, reason in NODE_ROLE_POLICIES.items():
        _ack(cluster, _managed(policy), reason)
    _ack(
        built.addons,
        _managed("service-role/AmazonEBSCSIDriverPolicy"),
        "the EBS CSI driver's documented policy, bound through Pod Identity to its controller service account only",
    )

    _acknowledge_kubectl_provider(cluster.node.find_child("KubectlProvider"))


def _acknowledge_imported_cluster(built: ImportedCluster) -> None:
    _acknowledge_kubectl_provider(built.kubectl_provider)
    function = built.check.function
    _ack(function, _managed(LAMBDA_BASIC), LAMBDA_BASIC_REASON)
    _ack(
        function,
        f"IAM5[Resource::{_arn(function, 'eks')}:addon/{built.cluster.cluster_name}/vpc-cni/*]",
        "eks:DescribeAddon on the existing cluster's vpc-cni add-on, whose ARN ends in an id EKS gives it (Service "
        "Authorization Reference, Amazon EKS: addon/<cluster>/<add-on>/<id>)",
    )
    _ack(
        function,
        "IAM5[Resource::*]",
        "read-only ec2:DescribeSubnets (the declared subnets lie in the declared VPC), which supports no "
        "resource-level permissions (Service Authorization Reference, Amazon EC2); the only action granted on *",
    )


def _acknowledge_kubectl_provider(kubectl: IConstruct) -> None:
    kubectl_reason = "CDK's kubectl provider (aws_eks_v2): runs helm/kubectl against this cluster from the VPC"
    for policy in (LAMBDA_BASIC, "service-role/AWSLambdaVPCAccessExecutionRole"):
        _ack(kubectl, _managed(policy), kubectl_reason)
    _ack(kubectl, _managed("AmazonEC2ContainerRegistryReadOnly"), kubectl_reason + " and pulls OCI charts from ECR")
    # CDK attaches the ECR Public policy under a condition it adds only to a role it creates (not to a platform's
    # kubectl role, cluster.existing.kubectl_role_arn)
    if kubectl.node.find_child("Handler").node.try_find_child("HasEcrPublic") is not None:
        public_ecr = (
            'IAM4[Policy::{"Fn::If":["'
            + _logical_id_of_path(kubectl, "Handler/HasEcrPublic", condition=True)
            + '",{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iam::aws:policy/'
            'AmazonElasticContainerRegistryPublicReadOnly"]]},{"Ref":"AWS::NoValue"}]}]'
        )
        _ack(kubectl, public_ecr, kubectl_reason + " and pulls charts from ECR Public when one is used")
    handler = _logical_id_of_path(kubectl, "Handler")
    _ack(
        kubectl, f"IAM5[Resource::<{handler}.Arn>:*]", "the provider framework invokes versions of the kubectl handler"
    )
    _ack(kubectl, "L1", "CDK pins the kubectl handler's runtime to the one its kubectl layer is built for")


def _acknowledge_node_autoscaler(capacity: GpuNodeGroupCapacity) -> None:
    autoscaler = capacity.node_autoscaler
    assert autoscaler is not None
    if autoscaler.role is not None:  # none where the platform runs the autoscaler
        _ack(
            autoscaler.role,
            "IAM5[Resource::*]",
            "Auto Scaling and EC2 Describe* calls have no resource-level permissions (Cluster Autoscaler AWS "
            "README); the two writes are conditioned on the Auto Scaling group's eks:cluster-name and "
            "pdstack.io/autoscaled tags",
        )
    for tagging in autoscaler.template_tags.values():
        _ack(
            tagging,
            "IAM5[Resource::*]",
            "autoscaling:CreateOrUpdateTags on the Auto Scaling group EKS made for "
            "this cluster's node group (its name is known only after creation), conditioned on eks:cluster-name",
        )
    # AwsCustomResource's one Lambda per stack, named AWS + its uuid without dashes, a child of the stack
    provider = cdk.Stack.of(capacity).node.try_find_child(
        "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
    )
    if provider is not None:  # none when no group is autoscaled (capacity blocks only)
        _ack(provider, _managed(LAMBDA_BASIC), LAMBDA_BASIC_REASON)


def _acknowledge_zone_check(check: GpuZoneCheck) -> None:
    _ack(check.function, _managed(LAMBDA_BASIC), LAMBDA_BASIC_REASON)
    _ack(
        check.function,
        "IAM5[Resource::*]",
        "read-only ec2:DescribeSubnets, DescribeAvailabilityZones and "
        "DescribeInstanceTypeOfferings, which support no resource-level permissions (Service Authorization "
        "Reference, Amazon EC2); the GPU zone check needs nothing else",
    )


def _environment(stack: cdk.Stack) -> tuple[str, str, str]:
    """Partition, region and account spelled the way cdk-nag reports them: pseudo parameters, or concrete values."""

    def part(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if cdk.Token.is_unresolved(value) else value

    return part(stack.partition, "Partition"), part(stack.region, "Region"), part(stack.account, "AccountId")


def _arn(scope: IConstruct, service: str) -> str:
    partition, region, account = _environment(cdk.Stack.of(scope))
    return f"arn:{partition}:{service}:{region}:{account}"


def _logical_id(construct: IConstruct) -> str:
    resource = construct.node.default_child
    return cdk.Stack.of(construct).get_logical_id(resource)  # type: ignore[arg-type]


def _logical_id_of_path(scope: IConstruct, path: str, *, condition: bool = False) -> str:
    node = scope
    for part in path.split("/"):
        node = node.node.find_child(part)
    element = node if condition else (node.node.default_child or node)
    return cdk.Stack.of(scope).get_logical_id(element)  # type: ignore[arg-type]


def _acknowledge_hyperpod(hyperpod: HyperPodCapacity) -> None:
    if hyperpod.zone_check is not None:
        _acknowledge_zone_check(hyperpod.zone_check)
    role = hyperpod.execution_role
    _ack(
        role,
        _managed("AmazonSageMakerClusterInstanceRolePolicy"),
        "the policy SageMaker HyperPod documents for cluster instances (node agent, logs, sagemaker-* lifecycle reads)",
    )
    _ack(role, _managed("AmazonEKS_CNI_Policy"), "HyperPod nodes run the VPC CNI, which assigns pod IPs from this role")
    _ack(
        role,
        "IAM5[Resource::*]",
        "HyperPod creates and attaches the instances' ENIs itself (ids unknown in advance); "
        "ecr:GetAuthorizationToken has no resource-level permissions; the nodes pull AWS-owned images (managed "
        "add-ons, EFA device plugin, health-monitoring agent) from AWS accounts' registries in several regions, "
        "which AmazonSageMakerClusterInstanceRolePolicy does not grant (AWS's HyperPod sample grants the pull on *)",
    )
    _ack(
        role,
        f"IAM5[Resource::{_arn(hyperpod, 'ec2')}:network-interface/*]",
        "ec2:CreateTags on the network interfaces HyperPod creates for its instances",
    )
    bucket_id = _logical_id(hyperpod.lifecycle_bucket)
    _ack(
        role,
        f"IAM5[Resource::<{bucket_id}.Arn>/{LIFECYCLE_PREFIX}/*]",
        "read of the lifecycle scripts, limited to their prefix in the lifecycle bucket",
    )

    # the BucketDeployment's singleton handler is a child of the stack
    stack = cdk.Stack.of(hyperpod)
    deployment = next(c for c in stack.node.children if c.node.id.startswith("Custom::CDKBucketDeployment"))
    reason = (
        "CDK's BucketDeployment handler copying the lifecycle scripts from the asset bucket into the lifecycle bucket"
    )
    _ack(deployment, _managed(LAMBDA_BASIC), LAMBDA_BASIC_REASON)
    for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*"):
        _ack(deployment, f"IAM5[Action::{action}]", reason)
    _ack(deployment, f"IAM5[Resource::<{bucket_id}.Arn>/*]", reason)
    partition, region, account = _environment(stack)
    _ack(deployment, f"IAM5[Resource::arn:{partition}:s3:::cdk-hnb659fds-assets-{account}-{region}/*]", reason)
    _ack(deployment, "L1", "CDK pins the BucketDeployment handler's runtime to the one its awscli layer is built for")


def _acknowledge_serving_unit(workloads: ServingUnitWorkloads) -> None:
    api_keys = workloads.api_keys
    if api_keys is not None:
        secret = workloads.api_keys_secret
        if secret is not None and not secret.startswith("arn:"):
            _ack(
                api_keys.role,
                f"IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:"
                f"secret:{secret}-??????]",
                "the one secret named in workloads.router.api_keys_secret: Secrets "
                "Manager appends six random characters to its name, which the wildcard stands for",
            )
    if workloads.model_reader is None:
        return
    bucket, _, prefix = workloads.model_source.removeprefix("s3://").partition("/")
    objects = f"{bucket}/{prefix.strip('/') + '/' if prefix.strip('/') else ''}*"
    readers = [workloads.model_reader, *([api_keys.role] if api_keys is not None else [])]
    for reader in readers:
        _ack(
            reader,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{objects}]",
            "read of the model's own objects: the files under the configured s3:// prefix, whose names the model "
            "decides",
        )
        if workloads.model_kms_key_arn is None:
            _ack(
                reader,
                "IAM5[Resource::*]",
                "kms:Decrypt for an SSE-KMS model bucket whose key is not configured: only through S3 "
                "(kms:ViaService) and only in the model bucket's encryption context (kms:EncryptionContext:aws:s3:arn)",
            )


def _acknowledge_load_balancer_controller(controller: LoadBalancerController) -> None:
    """The AWS Load Balancer Controller's own published policy (v3.5.0 docs/install/iam_policy.json), carried verbatim
    so that a controller upgrade is a file swap: its wildcards are the controller's contract, not pdstack's choice."""
    _ack(
        controller.role,
        "IAM5[Resource::*]",
        "the controller's Describe/Get/List calls (EC2, ELBv2, ACM, WAF, Shield, Cognito) have no resource-level "
        "permissions; the tagging writes on * are conditioned on the elbv2.k8s.aws/cluster tag. Unconditioned on * "
        "in the published policy: security-group ingress rules (on the nodes' and pods' groups, whose ids it "
        "discovers), CreateSecurityGroup, listener and rule create/modify/delete, WAF/Shield association. A known "
        "trade of the upstream policy, accepted rather than forked; only this controller's service account gets it",
    )
    _ack(
        controller.role,
        "IAM5[Resource::arn:aws:ec2:*:*:security-group/*]",
        "the security groups the controller creates for each load balancer (ids unknown in advance): tag writes "
        "only at creation (ec2:CreateAction CreateSecurityGroup) or on groups tagged elbv2.k8s.aws/cluster",
    )
    for kind in (
        "loadbalancer/app/*/*",
        "loadbalancer/net/*/*",
        "targetgroup/*/*",
        "listener/app/*/*/*",
        "listener/net/*/*/*",
        "listener-rule/app/*/*/*",
        "listener-rule/net/*/*/*",
    ):
        _ack(
            controller.role,
            f"IAM5[Resource::arn:aws:elasticloadbalancing:*:*:{kind}]",
            "the load balancers, listeners and target groups the controller creates for the cluster's Services "
            "(names unknown in advance); writes conditioned on the elbv2.k8s.aws/cluster tag where ELBv2 allows it",
        )
