"""pdstack as an installed package: build the wheel from the working tree, install it into a directory of its own,
and run a user's CDK app against it from outside the repository (tests/package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.synthesis import REPO

VENV_BIN = Path(sys.executable).parent
EXAMPLE_APP = REPO / "deployments" / "team_app"
# The same team's app on the VPC and EKS cluster its platform already runs (imported by their ids).
EXISTING_PLATFORM_APP = REPO / "deployments" / "team_app_existing"
# Printed by the child before the app runs: where each of pdstack's top-level packages was imported from.
WHERE_PREFIX = "pdstack-imported-from:"
RUN_USER_APP = (
    "import json, runpy, infra, pdstack, runtime\n"
    f"print({WHERE_PREFIX!r} + json.dumps({{m.__name__: m.__file__ for m in (infra, pdstack, runtime)}}), flush=True)\n"
    "runpy.run_path('app.py', run_name='__main__')\n"
)
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(?P<version>\S+)$")


def working_tree_files() -> list[str]:
    """What a fresh clone of the working tree would hold: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sorted(path for path in set(listed) if (REPO / path).is_file())


def build_wheel(workdir: Path) -> Path:
    """Copy the working tree's files to ``workdir/src`` (so no build/ or egg-info lands in the repository and no
    stale build output is packed) and build the wheel offline with the venv's setuptools."""
    source = workdir / "src"
    for path in working_tree_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    dist = workdir / "dist"
    subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("pdstack-*.whl")
    return wheel


def install(wheel: Path, target: Path) -> Path:
    subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return target


def wheel_metadata(wheel: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The wheel's Requires-Dist: ``{name: version}`` of the dependencies, and of each extra's."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    required: dict[str, str] = {}
    extras: dict[str, dict[str, str]] = {}
    for line in lines:
        if not line.startswith("Requires-Dist: "):
            continue
        requirement, _, marker = line.removeprefix("Requires-Dist: ").partition(";")
        match = REQUIREMENT.match(requirement.strip())
        assert match, f"not an exact pin: {line}"
        name, version = canonical(match["name"]), match["version"]
        extra = re.search(r'extra == "([^"]+)"', marker)
        (extras.setdefault(extra[1], {}) if extra else required)[name] = version
    return required, extras


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """``{name: version}`` of a requirements file's own pins (``-r`` includes are not followed)."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = REQUIREMENT.match(line)
        assert match, f"{path.name}: not an exact pin: {raw}"
        pins[canonical(match["name"])] = match["version"]
    return pins


def child_environment(site: Path, outdir: Path | None = None) -> dict[str, str]:
    """A user's shell: the venv's python and node on PATH, the installed package alone on PYTHONPATH."""
    environment = {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(site),
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    if outdir is not None:
        environment["CDK_OUTDIR"] = str(outdir)
    return environment


@dataclass(frozen=True)
class UserApp:
    directory: Path
    outdir: Path
    imported_from: dict[str, str]

    def template(self, stack: str) -> dict:
        return json.loads((self.outdir / f"{stack}.template.json").read_text())

    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


def run_example_app(site: Path, workdir: Path, example: Path = EXAMPLE_APP) -> UserApp:
    """Copy ``example`` (deployments/team_app) to ``workdir`` (outside the repository) and synthesize it with the venv's
    python, cwd there and the installed package alone importable."""
    directory = workdir / example.name
    shutil.copytree(example, directory, ignore=shutil.ignore_patterns("cdk.out", "__pycache__"))
    outdir = directory / "cdk.out"
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", RUN_USER_APP],
        cwd=directory,
        env=child_environment(site, outdir),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(WHERE_PREFIX)]
    return UserApp(directory, outdir, json.loads(line.removeprefix(WHERE_PREFIX)))
