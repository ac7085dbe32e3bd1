"""The role that reads an s3:// model: a bucket under SSE-KMS needs kms:Decrypt too (S3 decrypts each GetObject with
the caller's permission on the key), through S3 only and for the model's bucket only (issue 19, defect 14)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra.workloads.stack import model_reader_role
from tests.support.synthesis import Synthesized

KEY = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-4567-89ab-cdef-0123456789ab"


def _decrypt_statements(template: Template) -> list[dict]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "kms:Decrypt"
    ]


def _bucket_context(statement: dict) -> list[str]:
    return [
        json_arn["Fn::Join"][1][-1]
        for json_arn in statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    ]


def test_the_deployed_reader_may_decrypt_through_s3_in_the_model_buckets_context(default: Synthesized) -> None:
    (statement,) = _decrypt_statements(default.workloads)
    assert statement["Resource"] == "*"  # no key configured: any key, under the conditions below
    assert "kms:ViaService" in statement["Condition"]["StringEquals"]
    assert _bucket_context(statement) == [":s3:::my-models", ":s3:::my-models/*"]


def test_a_configured_key_is_the_only_one_the_reader_may_use() -> None:
    stack = cdk.Stack(cdk.App(), "Reader")
    model_reader_role(stack, "s3://bucket/prefix", KEY)
    (statement,) = _decrypt_statements(Template.from_stack(stack))
    assert statement["Resource"] == KEY
