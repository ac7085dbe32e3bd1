"""cdk-nag: zero unacknowledged findings for the shipped deployments, and the checks really run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_s3 as s3
from aws_cdk.cx_api import SynthesisMessageLevel
from aws_cdk.lambda_layer_kubectl_v34 import KubectlV34Layer

from infra.cluster.eks_checks import EksClusterChecks
from infra.compliance.nag import register_checks
from tests.support.synthesis import INFRA_FIXTURES, Synthesized


@pytest.mark.parametrize("fixture", INFRA_FIXTURES)
def test_no_unacknowledged_findings(request: pytest.FixtureRequest, fixture: str) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)  # synth raises ValidationFailed on any finding
    report = synth.validation_report()
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    for acknowledged in plugin["suppressedViolations"]:
        assert len(acknowledged["reason"]) > 30, acknowledged["acknowledgedId"]


def test_an_unacknowledged_finding_fails_synthesis(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    s3.CfnBucket(stack, "PlainBucket")  # no encryption, no logging, no TLS-only policy: several AwsSolutions rules
    cdk.Validations.of(app).add_plugins(__import__("cdk_nag").AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


def _eks_probe(tmp_path: Path, **cluster: Any) -> list[str]:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "EksProbe")
    eks.Cluster(
        stack,
        "Cluster",
        version=eks.KubernetesVersion.V1_34,
        default_capacity=0,
        default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
        kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV34Layer(stack, "Layer")),
        **cluster,
    )
    cdk.Aspects.of(app).add(EksClusterChecks())
    assembly = app.synth()
    return [
        str(m.entry.data)
        for m in assembly.get_stack_artifact("EksProbe").messages
        if m.level == SynthesisMessageLevel.ERROR and "[pdstack-EKS]" in str(m.entry.data)
    ]


def test_eks_check_flags_an_open_public_endpoint_and_missing_logs(tmp_path: Path) -> None:
    errors = _eks_probe(tmp_path, endpoint_access=eks.EndpointAccess.PUBLIC_AND_PRIVATE)
    assert any("public to the whole internet" in e for e in errors)
    assert any(
        "control-plane logging is off for: api, audit, authenticator, controllerManager, scheduler" in e for e in errors
    )


def test_eks_check_accepts_a_restricted_logged_cluster(tmp_path: Path) -> None:
    errors = _eks_probe(
        tmp_path,
        endpoint_access=eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from("203.0.113.0/24"),
        cluster_logging=[
            eks.ClusterLoggingTypes.API,
            eks.ClusterLoggingTypes.AUDIT,
            eks.ClusterLoggingTypes.AUTHENTICATOR,
            eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
            eks.ClusterLoggingTypes.SCHEDULER,
        ],
    )
    assert errors == []


def test_register_checks_is_what_app_py_uses() -> None:
    source = (Path(__file__).resolve().parents[2] / "app.py").read_text()
    assert "register_checks(app)" in source and register_checks.__module__ == "infra.compliance.nag"
