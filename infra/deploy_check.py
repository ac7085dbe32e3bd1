"""DeployCheck: the shape both deploy-time checks share (the GPU zone check, infra/gpu_capacity/gpu_zone/, and the
existing-cluster check, infra/cluster/existing_check/): one small Lambda whose code is a single stdlib-and-boto3 file
inlined into the template, its log group, the read-only statements it needs, and the custom resource that runs it.
The resource fails the deploy when the handler answers FAILED; make what must come after the check depend on
``resource``.

Inline code: CloudFormation zips ZipFile code into a package of at most 4 MB (the AWS::Lambda::Function resource
schema cfn-lint 1.58.0 ships: "This zip file cannot exceed 4MB"); the older 4096-character limit is gone (aws-cdk
PR #20624 dropped CDK's own check for that reason). The handlers stay small anyway: one file, no dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

# Well under the 4 MB package: a handler past this is no longer "one small file" and belongs in an asset.
MAX_INLINE_CHARACTERS = 16_000


class DeployCheck(Construct):
    """Exposes ``function`` and ``resource``. Children keep the ids Handler, Logs and Check (logical ids)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler_source: Path,
        description: str,
        resource_type: str,
        properties: Mapping[str, object],
        statements: Sequence[iam.PolicyStatement],
    ) -> None:
        super().__init__(scope, construct_id)
        source = handler_source.read_text()
        if len(source) > MAX_INLINE_CHARACTERS:
            raise ValueError(
                f"{handler_source} is {len(source)} characters; a deploy check's inline handler takes "
                f"{MAX_INLINE_CHARACTERS} at most"
            )
        self.function = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(source),
            timeout=cdk.Duration.seconds(60),
            description=description,
            log_group=logs.LogGroup(
                self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=cdk.RemovalPolicy.DESTROY
            ),
        )
        for statement in statements:
            self.function.add_to_role_policy(statement)
        self.resource = cdk.CustomResource(
            self,
            "Check",
            service_token=self.function.function_arn,
            resource_type=resource_type,
            properties=dict(properties),
        )
        # The role's policy is a resource of its own: the function must not run before it exists.
        self.resource.node.add_dependency(self.function.role)
