"""``status`` against moto in server mode, and against recorded answers for what moto does not model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.operations import aws_facts
from infra.operations.status import StatusReader
from tests.infra.operations.local_servers import FakeKubernetes, MotoServer, RecordedAws, serving
from tests.support.operations import REGION, Deployed, deployment_file, load, run_cli


@pytest.fixture
def default_file(tmp_path: Path) -> Path:
    return deployment_file(tmp_path)


def test_a_fully_deployed_environment_is_ready(aws_env: MotoServer, default_file: Path) -> None:
    deployed = Deployed(load(default_file)).everything()

    run = run_cli("status", "--deployment", str(default_file), "--region", REGION)

    assert run.code == 0, run.out + run.err
    assert "pdstack: account 123456789012, region us-east-1" in run.out
    for row in ("stack      pdstack-network", "stack      pdstack-cluster", "eks        pdstack"):
        assert row in run.out
    assert f"p5 ({deployed.nodegroups['p5']})" in run.out
    assert "ACTIVE, GPU, ON_DEMAND, desired 2" in run.out
    assert "ACTIVE, Kubernetes 1.35, endpoint private" in run.out
    assert "scan COMPLETE: HIGH 1" in run.out  # moto's default finding
    assert "last build SUCCEEDED" in run.out
    assert "note: node readiness not checked: the EKS API endpoint is private" in run.out
    assert run.out.rstrip().endswith("ready: every part of the deployment is up")


def test_on_an_existing_cluster_only_pdstacks_node_groups_are_checked(aws_env: MotoServer, tmp_path: Path) -> None:
    """deployments/existing-cluster.yaml: no network stack is looked for, and the platform's own node groups are
    named in a note, not reported as pdstack's system nodes."""
    path = deployment_file(tmp_path, "existing-cluster.yaml")
    deployed = Deployed(load(path)).everything()

    run = run_cli("status", "--deployment", str(path), "--region", REGION)

    assert run.code == 0, run.out + run.err
    assert "pdstack-byo-network" not in run.out and "stack      pdstack-byo-cluster" in run.out
    assert f"p5 ({deployed.nodegroups['p5']})" in run.out
    assert "system" not in run.out.replace("1 node group(s) of the platform not checked: platform-general", "")
    assert "note: 1 node group(s) of the platform not checked: platform-general" in run.out


def test_json_output_carries_every_check(aws_env: MotoServer, default_file: Path) -> None:
    Deployed(load(default_file)).everything()

    run = run_cli("status", "--deployment", str(default_file), "--region", REGION, "--json")

    body = json.loads(run.out)
    assert run.code == 0 and body["ready"] is True
    assert {c["area"] for c in body["checks"]} == {"stack", "eks", "nodegroup", "image", "build"}
    assert all(c["state"] == "ready" for c in body["checks"])


def test_hyperpod_cluster_and_nodes_from_moto(aws_env: MotoServer, tmp_path: Path) -> None:
    path = deployment_file(tmp_path, "hyperpod.yaml")
    Deployed(load(path)).everything()

    run = run_cli("status", "--deployment", str(path), "--region", REGION)

    assert run.code == 0, run.out + run.err
    assert "hyperpod       pdstack-hp" in run.out and "InService, 2 of 2 nodes Running" in run.out
    assert "hyperpod-node  p5-0 (p5)" in run.out and "hyperpod-node  p5-1 (p5)" in run.out


def test_partly_deployed_environment_names_what_is_missing(aws_env: MotoServer, default_file: Path) -> None:
    Deployed(load(default_file)).stack("network", VpcId="vpc-1")

    run = run_cli("status", "--deployment", str(default_file), "--region", REGION)

    assert run.code == 1
    assert "stack pdstack-image (not deployed yet)" in run.out
    assert "stack pdstack-cluster (not deployed yet)" in run.out


def test_image_that_was_never_pushed_is_a_failure(aws_env: MotoServer, default_file: Path) -> None:
    Deployed(load(default_file)).everything(push_image=False)

    run = run_cli("status", "--deployment", str(default_file), "--region", REGION)

    assert run.code == 1
    assert "FAILED" in run.out and "not in ECR" in run.out
    assert "never pushed or was deleted" in run.out


def test_scan_findings_by_severity(aws_env: MotoServer, default_file: Path) -> None:
    deployed = Deployed(load(default_file)).everything()
    aws_env.post(
        "/moto-api/static/ecr/scan-finding-results",
        json.dumps(
            {
                "region": REGION,
                "results": [
                    {
                        "registryId": "123456789012",
                        "repositoryName": deployed.repository,
                        "imageId": {"imageTag": "3f9c2a7d1e5b8c4a6f02"},
                        "imageScanStatus": {
                            "status": "COMPLETE",
                            "description": "The scan was completed successfully.",
                        },
                        "imageScanFindings": {"findingSeverityCounts": {"CRITICAL": 1, "HIGH": 3, "LOW": 7}},
                    }
                ],
            }
        ).encode(),
    )

    run = run_cli("status", "--deployment", str(default_file), "--region", REGION)

    assert "scan COMPLETE: CRITICAL 1, HIGH 3, LOW 7" in run.out
    assert run.code == 0  # findings are reported, not a readiness gate


def test_degraded_gpu_node_group_shows_the_eks_health_issue(
    aws_env: MotoServer, default_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Deployed(load(default_file)).everything()
    recorded = RecordedAws.load("eks-degraded-nodegroup.json")
    with serving(recorded) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", url)
        run = run_cli("status", "--deployment", str(default_file), "--region", REGION)

    assert run.code == 1
    assert "DEGRADED, GPU, ON_DEMAND, desired 2" in run.out
    assert "! AsgInstanceLaunchFailures: Could not launch On-Demand Instances. InsufficientInstanceCapacity" in run.out
    assert "GET /clusters/pdstack/node-groups/GpuP5Nodes7E3B-Kd2" in recorded.calls


def test_hyperpod_node_that_failed_deep_health_checks_is_named(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = deployment_file(tmp_path, "hyperpod.yaml")
    Deployed(load(path)).everything()
    with serving(RecordedAws.load("hyperpod-deep-health-failure.json")) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", url)
        run = run_cli("status", "--deployment", str(path), "--region", REGION)

    assert run.code == 1
    assert "hyperpod-node  i-0c4d9e2f7a1b3c5d7 (p5)" in run.out
    assert "Failure (automatic recovery replaces it)" in run.out
    assert "! Deep health check failed: InstanceStress" in run.out
    assert "InService, 1 of 2 nodes Running" in run.out


def test_hyperpod_without_recovery_marks_the_failed_node_failed(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    base = yaml.safe_load((Path(__file__).resolve().parents[3] / "deployments/hyperpod.yaml").read_text())
    path = deployment_file(tmp_path, "hyperpod.yaml", hyperpod={**base["hyperpod"], "node_recovery": "None"})
    Deployed(load(path)).everything()
    with serving(RecordedAws.load("hyperpod-deep-health-failure.json")) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", url)
        run = run_cli("status", "--deployment", str(path), "--region", REGION)

    assert run.code == 1
    line = next(line for line in run.out.splitlines() if "i-0c4d9e2f7a1b3c5d7" in line)
    assert "FAILED" in line


def test_ready_nodes_come_from_kubernetes_through_api_server(aws_env: MotoServer, default_file: Path) -> None:
    deployed = Deployed(load(default_file)).everything()
    gpu = deployed.nodegroups["p5"]
    kube = FakeKubernetes(
        cluster="pdstack",
        access_key="AKIATESTPDSTACK00001",
        nodes=[
            _node("ip-10-0-1-10", gpu, ready=True),
            _node("ip-10-0-1-11", gpu, ready=False),
            _node("ip-10-0-2-10", "SystemNodes8C1A9F2E-Xy7bQ3", ready=True),
            _node("ip-10-0-2-11", "SystemNodes8C1A9F2E-Xy7bQ3", ready=True),
        ],
    )
    with serving(kube) as url:
        run = run_cli("status", "--deployment", str(default_file), "--region", REGION, "--api-server", url)

    assert run.code == 1
    assert "desired 2, ready 1" in run.out and "! 1 of 2 nodes Ready in Kubernetes" in run.out
    assert "ON_DEMAND, desired 2, ready 2" in run.out  # the system node group
    assert kube.tokens_checked >= 1


def test_failed_build_links_its_logs() -> None:
    # CodeBuild speaks CBOR, and moto's BatchGetBuilds always answers SUCCEEDED: the failed shape is a recording.
    recording = json.loads((Path(__file__).parent / "recordings" / "codebuild-failed-build.json").read_text())
    build = aws_facts.Build.model_validate(recording["builds"][0])

    check = StatusReader._build_check("ImageBuildpdstack-A1b2C3d4", build)

    assert check.state == "failed" and check.summary == "last build FAILED"
    assert check.problems == [f"logs: {recording['builds'][0]['logs']['deepLink']}"]


def _node(name: str, nodegroup: str, ready: bool) -> dict:
    return {
        "metadata": {"name": name, "labels": {"eks.amazonaws.com/nodegroup": nodegroup}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
