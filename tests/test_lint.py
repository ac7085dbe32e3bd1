"""The guard-rails inside `make test`: the whole tree passes ruff's linter, is formatted as ruff formats it, and
type-checks under mypy. Rules and settings live in pyproject.toml; `make lint`, `make fmt` and `make typecheck` run
the same tools by hand (docs/development.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_ruff_finds_no_defects() -> None:
    result = run("ruff", "check", "--no-cache", ".", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_tree_is_formatted() -> None:
    result = run("ruff", "format", "--check", "--no-cache", ".", timeout=120)
    assert result.returncode == 0, "run `make fmt`:\n" + result.stdout[-3000:] + result.stderr[-1000:]


def test_mypy_finds_no_type_errors() -> None:
    # Cold, mypy takes a few minutes on this tree (2 cores); its cache (.mypy_cache, git-ignored) makes reruns fast.
    result = run("mypy", timeout=1200)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-1000:]
