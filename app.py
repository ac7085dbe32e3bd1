#!/usr/bin/env python3
"""CDK entry point: load the deployment file, build its stacks, register cdk-nag, synthesize.

cdk synth -c deployment=deployments/NAME.yaml      (default: deployments/default.yaml)
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from infra.compliance.nag import register_checks
from infra.config import DeploymentError, load_deployment
from infra.deployment_stacks import DeploymentStacks

DEFAULT_DEPLOYMENT = "deployments/default.yaml"


def main() -> int:
    app = cdk.App()
    path = app.node.try_get_context("deployment") or DEFAULT_DEPLOYMENT
    try:
        deployment = load_deployment(path)
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    DeploymentStacks(app, deployment)
    register_checks(app)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
