"""Where the serving image's build context comes from: the repository, or a copy staged from an installed pdstack.

The context holds exactly what the Dockerfile copies, ``container/`` and ``runtime/``, at those relative paths. In a
checkout they sit at the repository root. Installed (a wheel in site-packages), ``runtime/`` sits beside ``infra/``
and ``container/`` ships as ``pdstack/container/``; the context is then staged as a directory with the same relative
files, so the asset's content hash, and with it the image tag, is the one the checkout gives: an installed pdstack
builds and tags the same image as its repository at that commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# The repository root in a checkout; site-packages (or an install --target directory) when installed.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Only what the Dockerfile copies. Git-style patterns so the allow-list can be negated.
BUILD_CONTEXT_EXCLUDES = ["*", "!container/", "!container/**", "!runtime/", "!runtime/**", "**/__pycache__", "**/*.pyc"]
STAGED_CONTEXT = "pdstack-build-context"
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def installed_container_dir(source_root: Path = SOURCE_ROOT) -> Path | None:
    """``pdstack/container`` when pdstack runs from an installation (the wheel maps container/ there), else None."""
    shipped = source_root / "pdstack" / "container"
    return shipped if shipped.is_dir() else None


def build_context_dir(outdir: Path, source_root: Path = SOURCE_ROOT) -> Path:
    """The directory to give the build-context asset (with BUILD_CONTEXT_EXCLUDES): the repository root in a
    checkout, else ``<outdir>/pdstack-build-context`` staged afresh from the installation (inside the cloud
    assembly, so nothing is left outside it and the asset's source outlives the process)."""
    shipped = installed_container_dir(source_root)
    if shipped is None:
        return source_root
    staged = outdir / STAGED_CONTEXT
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(shipped, staged / "container", ignore=_COPY_IGNORE)
    shutil.copytree(source_root / "runtime", staged / "runtime", ignore=_COPY_IGNORE)
    return staged
