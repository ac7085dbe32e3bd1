"""Every error a user can cause: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.infra.operations.local_servers import MotoServer, RecordedAws, serving
from tests.support.operations import REGION, REPO, Deployed, deployment_file, load, run_cli
from tests.support.serving_units import FILE as TWO_MODELS


def _one_line_error(run, expected: str) -> None:
    assert run.code == 2, (run.code, run.out, run.err)
    assert run.err.count("\n") == 1 and run.err.startswith("error: "), run.err
    assert expected in run.err, run.err
    assert "Traceback" not in run.err + run.out


def test_no_credentials(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    run = run_cli("status", "--deployment", str(deployment_file(tmp_path)), "--region", REGION)

    _one_line_error(run, "error: no AWS credentials: set AWS_PROFILE")


def test_unknown_profile(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "staging-admin")

    run = run_cli("status", "--deployment", str(deployment_file(tmp_path)), "--region", REGION)

    _one_line_error(run, "no AWS credentials: The config profile (staging-admin) could not be found")


def test_region_that_does_not_exist(aws_env: MotoServer, tmp_path: Path) -> None:
    run = run_cli("status", "--deployment", str(deployment_file(tmp_path)), "--region", "us-esat-1")

    _one_line_error(run, "error: wrong region: 'us-esat-1' is not an AWS region (did you mean us-east-1?)")


def test_region_other_than_the_deployments(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path, account="123456789012", region="us-east-2")

    run = run_cli("wait", "--deployment", str(path), "--region", "us-west-2")

    _one_line_error(
        run, f"error: wrong region: {path} deploys to us-east-2, not us-west-2; drop --region or fix the file"
    )


def test_no_region_for_an_environment_agnostic_deployment(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path)

    run = run_cli("status", "--deployment", str(path))

    _one_line_error(run, f"error: no AWS region: {path} names none (environment-agnostic); pass --region")


def test_credentials_of_another_account(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path, account="210987654321", region="us-east-2")

    run = run_cli("status", "--deployment", str(path))

    _one_line_error(run, "error: wrong account: the credentials are for 123456789012")


def test_stack_not_deployed(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path)

    run = run_cli("status", "--deployment", str(path), "--region", "eu-west-1")

    _one_line_error(
        run,
        "error: not deployed: no stack of 'pdstack' in account 123456789012, region eu-west-1 "
        "(looked for pdstack-network, pdstack-image, pdstack-cluster, pdstack-gpu-nodes, pdstack-workloads, "
        "pdstack-observability)",
    )


def test_smoke_before_the_cluster_stack_exists(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path)
    Deployed(load(path)).stack("network", VpcId="vpc-1")

    run = run_cli("smoke", "--deployment", str(path), "--region", REGION)

    _one_line_error(run, "error: not deployed: stack pdstack-cluster has no cluster in us-east-1 yet")


def test_access_denied(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforces IAM: a user that may only ask who it is cannot read the stacks."""
    path = deployment_file(tmp_path)
    Deployed(load(path)).everything()
    iam = boto3.Session(region_name=REGION).client("iam")
    iam.create_user(UserName="viewer")
    iam.put_user_policy(
        UserName="viewer",
        PolicyName="whoami-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="viewer")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    aws_env.enforce_iam(0)
    try:
        run = run_cli("status", "--deployment", str(path), "--region", REGION)
    finally:
        aws_env.enforce_iam(float("inf"))

    _one_line_error(
        run,
        "error: access denied: arn:aws:iam::123456789012:user/viewer may not call "
        "cloudformation:DescribeStacks in us-east-1 (AccessDenied)",
    )


def test_credentials_aws_does_not_know(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    aws_env.enforce_iam(0)
    try:
        run = run_cli("status", "--deployment", str(deployment_file(tmp_path)), "--region", REGION)
    finally:
        aws_env.enforce_iam(float("inf"))

    _one_line_error(
        run, "error: AWS rejected the credentials for sts:GetCallerIdentity in us-east-1 (InvalidClientTokenId)"
    )


def test_expired_session(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(RecordedAws.load("sts-expired-token.json")) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
        run = run_cli("status", "--deployment", str(deployment_file(tmp_path)), "--region", REGION)

    _one_line_error(run, "error: the AWS credentials have expired (ExpiredToken)")


def test_deployment_file_missing(aws_env: MotoServer, tmp_path: Path) -> None:
    run = run_cli("status", "--deployment", str(tmp_path / "nope.yaml"))

    _one_line_error(run, "nope.yaml: cannot read the deployment file (No such file or directory)")


def test_invalid_deployment_file_names_the_field(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path, region="us-east-2")  # region without account

    run = run_cli("status", "--deployment", str(path))

    assert run.code == 2 and "account and region go together" in run.err and "Traceback" not in run.err


def test_bad_duration_is_a_usage_error(aws_env: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli("wait", "--deployment", str(deployment_file(tmp_path)), "--timeout", "45 minutes")

    assert run.code == 2
    assert "'45 minutes' is not a duration; write it like 45m, 1h30m or 90s" in capsys.readouterr().err


def test_plain_http_api_server_only_on_loopback(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path)
    Deployed(load(path)).everything()

    run = run_cli("smoke", "--deployment", str(path), "--region", REGION, "--api-server", "http://10.0.0.5:443")

    _one_line_error(run, "error: http://10.0.0.5:443: plain http is only for a local tunnel (127.0.0.1); use https")


def test_bad_service_name(aws_env: MotoServer, tmp_path: Path) -> None:
    run = run_cli(
        "smoke", "--deployment", str(deployment_file(tmp_path)), "--region", REGION, "--router-service", "Router_Svc"
    )

    _one_line_error(run, "error: --router-service: String should match pattern")


def test_the_real_command_prints_one_line_and_no_traceback(aws_env: MotoServer, tmp_path: Path) -> None:
    """As a user runs it: a new process, the module entry point."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "infra", "status", "--deployment", str(deployment_file(tmp_path)), "--region", REGION],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: no AWS credentials") and done.stderr.count("\n") == 1


def test_operations_never_import_aws_cdk() -> None:
    code = (
        "import sys, infra.__main__; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'jsii', 'constructs')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--model", "mistral"], "--model mistral: not a model of two-models; its models: llama-8b, llama-70b"),
        (["--namespace", "pdstack"], "--namespace holds one model's workloads: name it with --model (2 models)"),
    ],
    ids=["unknown model", "one namespace for several models"],
)
def test_smoke_of_a_several_model_deployment_names_its_model(
    aws_env: MotoServer, extra: list[str], expected: str
) -> None:
    run = run_cli("smoke", "--deployment", str(TWO_MODELS), "--region", REGION, *extra)

    _one_line_error(run, expected)


def test_smoke_of_a_one_model_deployment_takes_no_model(aws_env: MotoServer, tmp_path: Path) -> None:
    run = run_cli("smoke", "--deployment", str(deployment_file(tmp_path)), "--region", REGION, "--model", "x")

    _one_line_error(run, "--model x: pdstack serves one model, from its serving section; drop --model")
