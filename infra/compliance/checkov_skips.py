"""Every checkov finding pdstack accepts, each scoped to the resources that carry it, with the reason a reviewer can
check (checkov runs in tests/infra/test_checkov.py over the synthesized templates and the rendered Kubernetes objects).

A skip names one check and resource patterns (``fnmatch`` over checkov's resource id: ``AWS::Type.LogicalId`` for
CloudFormation, ``Kind.namespace.name`` for Kubernetes). A logical id starts with the path of the constructs that
hold the resource, so the CloudFormation patterns start with ``*``: a skip follows pdstack's construct into a user's
own stacks (tests/package runs checkov over the example app), as the cdk-nag acknowledgements do. The test fails on
a finding no skip covers, and on a pattern that no longer matches any finding, so the list cannot outgrow what the
code does. Fix a finding before listing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.workload_names import ROUTER, worker_name


@dataclass(frozen=True)
class Skip:
    check: str
    resources: tuple[str, ...]
    reason: str


# Lambda functions that CDK generates for deploy-time custom resources, and pdstack's own image-build waiter.
_CDK_PROVIDER_FUNCTIONS = (
    "AWS::Lambda::Function.*ClusterKubectlProviderHandler*",  # aws_eks_v2's kubectl/helm handler
    "AWS::Lambda::Function.*ClusterKubectlProviderframeworkonEvent*",  # its Provider framework entry
    # the same handler and entry pdstack builds for an existing cluster (infra/cluster/imported.py)
    "AWS::Lambda::Function.*KubectlProviderHandler*",
    "AWS::Lambda::Function.*KubectlProviderframeworkonEvent*",
    "AWS::Lambda::Function.*BuildWaiterframework*",  # the Provider framework around the image-build waiter
    "AWS::Lambda::Function.*CustomVpcRestrictDefaultSGCustomResourceProviderHandler*",  # ec2.Vpc's default-SG lockdown
    "AWS::Lambda::Function.*CustomS3AutoDeleteObjectsCustomResourceProviderHandler*",  # auto_delete_objects
    "AWS::Lambda::Function.*CustomCDKBucketDeployment*",  # BucketDeployment of the HyperPod lifecycle scripts
    # AwsCustomResource's singleton handler (AWS + its fixed uuid): the Cluster Autoscaler's node-template ASG tags
    "AWS::Lambda::Function.*AWS679f53fac002430cb0da5b7982bd2287*",
)
_OWN_DEPLOY_FUNCTIONS = (
    "AWS::Lambda::Function.*BuildWaiteronevent*",
    "AWS::Lambda::Function.*BuildWaiteriscomplete*",
    "AWS::Lambda::Function.*GpuZoneCheckHandler*",  # the GPU zone check (infra/gpu_capacity/gpu_zone)
    "AWS::Lambda::Function.*ExistingClusterCheckHandler*",  # the existing-cluster check (infra/cluster/existing_check)
)
_DEPLOY_FUNCTIONS = (*_CDK_PROVIDER_FUNCTIONS, *_OWN_DEPLOY_FUNCTIONS)
_DEPLOY_FUNCTIONS_OUTSIDE_VPC = tuple(f for f in _DEPLOY_FUNCTIONS if "KubectlProvider" not in f)
# The CDK handlers with an environment (the other two have none).
_FUNCTIONS_WITH_ENVIRONMENT = tuple(
    f for f in _CDK_PROVIDER_FUNCTIONS if "CustomResourceProviderHandler" not in f and "AWS679f53" not in f
)
# The engines as checkov sees them: Deployments, and a multi-node role's LeaderWorkerSet as one Deployment per pod
# template, pdstack-<role>-leader and -worker (the renderings tests/infra/test_checkov.py scans: multi-node decode).
_ENGINES = (f"Deployment.*.{worker_name('prefill')}", f"Deployment.*.{worker_name('decode')}*")
_ROUTER_POD = f"Deployment.*.{ROUTER}"
_SERVING_PODS = (*_ENGINES, _ROUTER_POD)

CLOUDFORMATION: tuple[Skip, ...] = (
    Skip(
        "CKV_AWS_115",
        _DEPLOY_FUNCTIONS,
        "deploy-time custom-resource handlers, invoked a few times per deployment; reserved concurrency would take "
        "from the account's pool and fails outright in accounts at the default 10-execution quota",
    ),
    Skip(
        "CKV_AWS_116",
        _DEPLOY_FUNCTIONS,
        "CloudFormation custom-resource handlers: a failed invocation fails the stack operation and CloudFormation "
        "reports it; there is no event a dead-letter queue could keep for a later replay",
    ),
    Skip(
        "CKV_AWS_117",
        _DEPLOY_FUNCTIONS_OUTSIDE_VPC,
        "these handlers call only AWS control-plane APIs (CodeBuild, S3, EC2, EKS, Auto Scaling) and reach nothing "
        "inside the VPC; "
        "the kubectl handler, which does reach the private API server, runs in the VPC",
    ),
    Skip(
        "CKV_AWS_173",
        _FUNCTIONS_WITH_ENVIRONMENT,
        "the environment holds resource names and ARNs, no secrets; Lambda encrypts it at rest with an AWS-managed "
        "key, and a customer key would protect nothing more",
    ),
    Skip(
        "CKV_AWS_158",
        ("AWS::Logs::LogGroup.*",),
        "image-build and deploy-time handler logs (no customer data, no secrets), encrypted at rest by CloudWatch "
        "Logs with service keys and kept a month; a customer-managed key would add a key policy and nothing more",
    ),
    Skip(
        "CKV_AWS_18",
        ("AWS::S3::Bucket.*LifecycleAccessLogs*",),
        "the access-log bucket of the lifecycle bucket: S3 server access logs of a log bucket would log themselves",
    ),
    Skip(
        "CKV_AWS_111",
        ("AWS::IAM::Policy.*ExecutionRoleDefaultPolicy*",),
        "the HyperPod execution role: HyperPod creates, attaches and deletes the instances' ENIs in the VPC (ids "
        "unknown in advance), the ec2 network-interface actions the HyperPod VPC documentation requires on *",
    ),
    Skip(
        "CKV_AWS_109",
        ("AWS::IAM::Policy.*ExecutionRoleDefaultPolicy*",),
        "ec2:CreateNetworkInterfacePermission on the HyperPod execution role: HyperPod lets its service attach the "
        "ENIs it creates in the VPC, per the HyperPod VPC documentation; no IAM permission is managed",
    ),
    Skip(
        "CKV_AWS_111",
        ("AWS::IAM::Policy.*BuildWaiterwaiterstatemachineRoleDefaultPolicy*",),
        "CDK's Provider-framework waiter state machine: Step Functions log delivery (logs:CreateLogDelivery and "
        "friends) has no resource-level permissions, so CloudWatch Logs requires Resource *",
    ),
    Skip(
        "CKV_AWS_111",
        ("AWS::IAM::Role.*LoadBalancerControllerRole*",),
        "the AWS Load Balancer Controller's published IAM policy (v3.5.0, carried verbatim: "
        "infra/cluster/aws_load_balancer_controller_iam_policy.json): security-group ingress, CreateSecurityGroup, "
        "listener and rule writes on * for the load balancers it creates (ids unknown in advance); only its service "
        "account gets the role (Pod Identity), and only when workloads.router.internal_load_balancer is on",
    ),
)

KUBERNETES: tuple[Skip, ...] = (
    Skip(
        "CKV_K8S_11",
        _SERVING_PODS,
        "CPU is requested, never limited: a CFS quota throttles vLLM's busy-polling engine loop and the router's "
        "event loop in bursts, which shows as latency spikes; the request reserves the share on a dedicated node",
    ),
    Skip(
        "CKV_K8S_43",
        _SERVING_PODS,
        "the image tag is a content hash of every build input, in an ECR repository with immutable tags; its "
        "digest exists only after the build that runs during the deploy, so the manifest cannot name it",
    ),
    Skip(
        "CKV_K8S_15",
        _SERVING_PODS,
        "the tag is immutable and content-addressed, so IfNotPresent can only reuse the same image; Always would "
        "make every engine restart depend on reaching ECR, and the nodes run pdstack's pods only",
    ),
    Skip(
        "CKV_K8S_25",
        _ENGINES,
        "IPC_LOCK, the one capability added after dropping ALL: EFA (libfabric/ibverbs) pins the GPU and host memory "
        "it registers for RDMA, which needs locking memory beyond RLIMIT_MEMLOCK",
    ),
    Skip(
        "CKV_K8S_40",
        _ENGINES,
        "uid 2000 is the serving image's own user (llm-d's AWS image: useradd --uid 2000, USER 2000), the owner of "
        "its HOME and caches; runAsNonRoot holds, and pdstack's GPU nodes run no other tenant's workloads",
    ),
    Skip(
        "CKV_K8S_38",
        (_ROUTER_POD,),
        "the router watches the engines' EndpointSlices through the API server with this token (a Role allowing "
        "get/list/watch on endpointslices in its namespace and nothing else); engines get no token",
    ),
)
