"""``status`` on a HyperPod cluster in continuous provisioning: a group short of its target says what failed, read
from ListClusterEvents and DescribeClusterEvent (moto models neither: a recording served on loopback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.operations import aws_facts
from tests.infra.operations.local_servers import RECORDINGS, MotoServer, RecordedAws, serving
from tests.support.operations import REGION, Deployed, Run, deployment_file, load, run_cli

RECORDING = "hyperpod-continuous-provisioning-short.json"


def _status(recorded: RecordedAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``status`` of the HyperPod deployment: moto for everything but SageMaker, which ``recorded`` answers."""
    path = deployment_file(tmp_path, "hyperpod.yaml")
    Deployed(load(path)).everything()
    with serving(recorded) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", url)
        return run_cli("status", "--deployment", str(path), "--region", REGION)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


def test_a_short_instance_group_names_the_capacity_and_lifecycle_failures(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = RecordedAws.load(RECORDING)
    run = _status(recorded, tmp_path, monkeypatch)

    assert run.code == 1, run.out + run.err
    line = next(line for line in run.out.splitlines() if line.startswith("hyperpod-group"))
    assert "p5" in line and "not ready" in line and "1 of 2 instances" in line
    capacity = (
        "Error: Instance creation in Cluster pdstack-hp and InstanceGroup p5 failed: We currently do not have "
        "sufficient capacity to launch new ml.p5.48xlarge instances. Please try again."
    )
    lifecycle = (
        "Error: Instance creation in Cluster pdstack-hp and InstanceGroup p5 failed: Lifecycle script on_create.sh"
    )
    problems = [line.strip() for line in run.out.splitlines() if line.strip().startswith("! ")]
    # newest first, the repeated capacity failure once, the Info event not at all
    assert len(problems) == 2 and problems[0] == f"! {_at(1795003600)} {capacity}"
    assert problems[1].startswith(f"! {_at(1795001200)} {lifecycle} failed with exit code 1")
    assert "Scaling of InstanceGroup p5 started" not in run.out
    assert recorded.calls.count("POST SageMaker.DescribeClusterEvent") == 3  # the Warn/Error events only


def test_a_group_at_its_target_reads_no_events(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path, "hyperpod.yaml")
    Deployed(load(path)).everything()  # moto: every group at its target, and no ListClusterEvents to call

    run = run_cli("status", "--deployment", str(path), "--region", REGION)

    assert run.code == 0, run.out + run.err
    assert "hyperpod-group" not in run.out and "events" not in run.out


def test_without_continuous_provisioning_there_are_no_events_to_read(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListClusterEvents serves only clusters in continuous provisioning; otherwise a failed scale-up fails the
    cluster with its FailureMessage, which the cluster row shows."""
    recorded = RecordedAws.load(RECORDING)
    del recorded.routes["POST SageMaker.DescribeCluster"][0]["body"]["NodeProvisioningMode"]
    run = _status(recorded, tmp_path, monkeypatch)

    assert "hyperpod-group" not in run.out and "InService, 1 of 2 nodes Running" in run.out
    assert "POST SageMaker.ListClusterEvents" not in recorded.calls


def test_events_that_cannot_be_read_leave_a_note_not_a_crash(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = RecordedAws.load(RECORDING)
    recorded.routes["POST SageMaker.ListClusterEvents"] = [
        {
            "status": 400,
            "body": {
                "__type": "AccessDeniedException",
                "message": "not authorized to perform: sagemaker:ListClusterEvents",
            },
        }
    ]
    run = _status(recorded, tmp_path, monkeypatch)

    assert run.code == 1, run.out + run.err
    assert "1 of 2 instances" in run.out
    assert "note: HyperPod events of instance group p5 not read: access denied" in run.out
    assert "sagemaker:ListClusterEvents" in run.out


def test_the_recording_has_the_shape_botocore_documents() -> None:
    """Each recorded answer is what botocore's service model says the operation returns."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    routes = json.loads((RECORDINGS / RECORDING).read_text())["routes"]
    validator = ParamValidator()
    for key, answers in routes.items():
        operation = model.operation_model(key.removeprefix("POST SageMaker."))
        for answer in answers:
            body = json.loads(json.dumps(answer["body"]))
            _epochs_to_datetimes(body)
            report = validator.validate(body, operation.output_shape)
            assert not report.has_errors(), (key, report.generate_report())
    summary = routes["POST SageMaker.ListClusterEvents"][0]["body"]["Events"][0]
    assert aws_facts.ClusterEvent.model_validate(summary).level == "Error"


def _epochs_to_datetimes(value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("Time") and isinstance(item, float):
                value[key] = datetime.fromtimestamp(item, UTC)
            else:
                _epochs_to_datetimes(item)
    elif isinstance(value, list):
        for item in value:
            _epochs_to_datetimes(item)
