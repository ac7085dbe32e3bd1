"""Custom-resource handlers that start the image build on deploy and hold the stack until it has finished.

CloudFormation's Provider framework calls ``on_event`` once and then ``is_complete`` every query interval, so the
stacks that run the image never see a tag that has not been pushed. Runs in Lambda with boto3 from the runtime.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

_codebuild = boto3.client("codebuild")
_FAILED = {"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}


def on_event(event: dict[str, Any], _context: object) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        # The image stays in ECR (immutable tags); nothing to undo.
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    props = event["ResourceProperties"]
    build = _codebuild.start_build(projectName=props["ProjectName"])["build"]
    print(json.dumps({"msg": "image build started", "build_id": build["id"], "image_tag": props["ImageTag"]}))
    return {"PhysicalResourceId": f"{props['ProjectName']}:{props['ImageTag']}", "Data": {"BuildId": build["id"]}}


def is_complete(event: dict[str, Any], _context: object) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    build = _codebuild.batch_get_builds(ids=[build_id])["builds"][0]
    status = build["buildStatus"]
    print(
        json.dumps(
            {"msg": "image build status", "build_id": build_id, "status": status, "phase": build.get("currentPhase")}
        )
    )
    if status in _FAILED:
        logs = build.get("logs", {}).get("deepLink", "the CodeBuild console")
        raise RuntimeError(f"image build {build_id} ended {status}; see {logs}")
    return {"IsComplete": status == "SUCCEEDED", "Data": {"BuildId": build_id}}
