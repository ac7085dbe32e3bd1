"""ImageStack: the ECR repository and the in-account CodeBuild build of container/ on the pinned base image.

Nothing is built on the deploying machine (a ~20 GB GPU image does not belong on a laptop): the build context is an
S3 asset holding container/ and runtime/, the tag is a hash of every build input (that asset's content, the pinned base
image, the pull-through setting and the build environment), and a custom resource runs the build during deploy and
waits for it, so ``image_uri`` always names a pushed image built from exactly these inputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import ImageConfig
from infra.image.build_context import BUILD_CONTEXT_EXCLUDES, build_context_dir
from infra.stack_outputs import ImageOutputs

# CloudFormation gives a custom resource one hour at most (aws-cdk-lib custom_resources.Provider: "totalTimeout ...
# The maximum timeout is 1 hour"), so the stack cannot honestly wait longer. The build gets the same budget minus
# the waiter's polling slack: a build that would outlive the wait is stopped, not left to push after deploy failed.
WAIT_TIMEOUT = cdk.Duration.minutes(55)
BUILD_TIMEOUT = cdk.Duration.minutes(50)
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0


def image_tag(context_hash: str, config: ImageConfig) -> str:
    """The serving image's tag: changes whenever anything the build reads changes, so a changed input always builds
    (tags are immutable; an unchanged tag skips the build and the workloads keep the old image)."""
    inputs = {
        "context": context_hash,
        "base_image": config.base_image,
        "pull_through_cache": config.pull_through_cache.model_dump(mode="json"),
        "build_image": BUILD_IMAGE.image_id,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ImageProps:
    config: ImageConfig
    deployment_name: str  # names the repository and the pull-through prefix unless the config names them


class ServingImage(Construct):
    """Exposes ``repository`` and ``image_uri`` (the content-tagged serving image)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ImageProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        key = kms.Key(
            self,
            "ImageKey",
            enable_key_rotation=True,
            description="pdstack image repository and build",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=config.repository_name(props.deployment_name),
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=key,
            # destroy-then-deploy: a retained repository of this fixed name made the next create fail
            # (AlreadyExists). The images go with it; the next deploy rebuilds the image from source.
            removal_policy=cdk.RemovalPolicy.DESTROY,
            empty_on_delete=True,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="drop untagged layers after a week",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=cdk.Duration.days(7),
                    rule_priority=1,
                ),
                ecr.LifecycleRule(
                    description="keep the 30 newest builds",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=30,
                    rule_priority=2,
                ),
            ],
        )

        stage = cdk.Stage.of(self)
        assert stage is not None, "a construct in a CDK app is under a Stage (the App is one)"
        context = s3_assets.Asset(
            self,
            "BuildContext",
            path=str(build_context_dir(Path(stage.outdir))),
            exclude=BUILD_CONTEXT_EXCLUDES,
            ignore_mode=cdk.IgnoreMode.GIT,
        )
        self.image_tag = image_tag(context.asset_hash, config)
        self.image_uri = self.repository.repository_uri_for_tag(self.image_tag)

        base_image = config.base_image
        self.pull_through_prefix = config.pull_through_cache.prefix(props.deployment_name)
        if config.pull_through_cache.enabled:
            if config.pull_through_cache.create_rule:  # else an existing rule of that prefix is used, and kept
                ecr.CfnPullThroughCacheRule(
                    self,
                    "GhcrPullThroughCache",
                    ecr_repository_prefix=self.pull_through_prefix,
                    upstream_registry="github-container-registry",
                    upstream_registry_url="ghcr.io",
                    credential_arn=config.pull_through_cache.credential_secret_arn,
                )
            stack = cdk.Stack.of(self)
            registry = f"{stack.account}.dkr.ecr.{stack.region}.{stack.url_suffix}"
            base_image = base_image.replace("ghcr.io/", f"{registry}/{self.pull_through_prefix}/", 1)

        build_logs = logs.LogGroup(
            self, "BuildLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.project = codebuild.Project(
            self,
            "ImageBuild",
            description="Builds the pdstack serving image from container/ on the pinned base image",
            source=codebuild.Source.s3(bucket=context.bucket, path=context.s3_object_key),
            build_spec=codebuild.BuildSpec.from_source_filename("container/buildspec.yml"),
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE,
                compute_type=codebuild.ComputeType.LARGE,
                privileged=True,  # docker build needs the Docker daemon
            ),
            environment_variables={
                "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(value=self.repository.repository_uri),
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.image_tag),
                "BASE_IMAGE": codebuild.BuildEnvironmentVariable(value=base_image),
            },
            encryption_key=key,
            timeout=BUILD_TIMEOUT,
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=build_logs)),
        )
        self.repository.grant_pull_push(self.project)
        if config.pull_through_cache.enabled:
            cache_repos = cdk.Stack.of(self).format_arn(
                service="ecr", resource="repository", resource_name=f"{self.pull_through_prefix}/*"
            )
            self.project.add_to_role_policy(
                iam.PolicyStatement(
                    actions=[
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchImportUpstreamImage",
                        "ecr:CreateRepository",
                    ],
                    resources=[cache_repos],
                )
            )

        self._run_build_on_deploy()

        cdk.CfnOutput(self, ImageOutputs.REPOSITORY_URI, value=self.repository.repository_uri)
        cdk.CfnOutput(self, ImageOutputs.IMAGE_URI, value=self.image_uri)
        cdk.CfnOutput(self, ImageOutputs.BUILD_PROJECT, value=self.project.project_name)

    def _run_build_on_deploy(self) -> None:
        code = lambda_.Code.from_asset(str(Path(__file__).parent / "functions"), exclude=["__pycache__"])
        handlers = {}
        for name in ("on_event", "is_complete"):
            handler_logs = logs.LogGroup(
                self,
                f"BuildWaiter-{name}-Logs",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=cdk.RemovalPolicy.DESTROY,
            )
            function = lambda_.Function(
                self,
                f"BuildWaiter-{name}",
                runtime=lambda_.Runtime.PYTHON_3_14,
                handler=f"image_build.{name}",
                code=code,
                timeout=cdk.Duration.seconds(30),
                log_group=handler_logs,
            )
            handlers[name] = function
        handlers["on_event"].add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:StartBuild"], resources=[self.project.project_arn])
        )
        handlers["is_complete"].add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:BatchGetBuilds"], resources=[self.project.project_arn])
        )
        provider_logs = logs.LogGroup(
            self, "BuildWaiterLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        provider = cr.Provider(
            self,
            "BuildWaiter",
            on_event_handler=handlers["on_event"],
            is_complete_handler=handlers["is_complete"],
            query_interval=cdk.Duration.seconds(30),
            total_timeout=WAIT_TIMEOUT,
            log_group=provider_logs,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=provider_logs, level=cdk.aws_stepfunctions.LogLevel.ALL, include_execution_data=False
            ),
        )
        cdk.CustomResource(
            self,
            "ImageBuildRun",
            service_token=provider.service_token,
            resource_type="Custom::PdstackImageBuild",
            properties={"ProjectName": self.project.project_name, "ImageTag": self.image_tag},
        )


class ImageStack(cdk.Stack):
    """The ServingImage construct in a stack of its own (pdstack's app), as ``image``; id "Default" keeps the
    logical ids the stack gave its resources when it built them itself."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ImageProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.image = image = ServingImage(self, "Default", props=props)
        self.repository, self.image_tag, self.image_uri = image.repository, image.image_tag, image.image_uri
        self.project, self.pull_through_prefix = image.project, image.pull_through_prefix
