"""Who may import whom. The container carries the runtime alone: nothing under runtime/ imports infra, aws_cdk, the
tests, the bench or the test bed. Tests may import bench and testbed, never the reverse; the test bed (shared by
tests, bench and ``make demo``) never imports bench. The simulated engine (bench/fake_engine) tokenizes on its own
path, never with the router's code, so the bench can see a router/engine disagreement; and the harness, which
counts the workload's prompt tokens and its oracle hit rate, counts them as the engines do, not as the router does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = {
    "runtime": ("infra", "aws_cdk", "constructs", "cdk_nag", "tests", "bench", "testbed"),
    "bench": ("tests",),
    "testbed": ("tests", "bench"),
    "bench/fake_engine": ("runtime.router",),
    "bench/harness": ("runtime.router",),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(root: Path, package: str, forbidden: tuple[str, ...]) -> set[str]:
    """``file: module`` for every import under ``root/package`` of a forbidden module or one inside it."""
    return {
        f"{path.relative_to(root)}: {name}"
        for path in (root / package).rglob("*.py")
        for name in imported_modules(path)
        if any(name == banned or name.startswith(banned + ".") for banned in forbidden)
    }


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_layer_imports_what_it_must_not(package: str) -> None:
    assert not violations(REPO, package, RULES[package])


def test_infra_reaches_the_router_through_its_contract_alone() -> None:
    """infra/ reads metric names, buckets and the discovery label from runtime/router/contract.py, never from the
    router's internals (which move and change without infra noticing)."""
    reached = {
        found
        for found in violations(REPO, "infra", ("runtime.router",))
        if not found.endswith(": runtime.router.contract")
    }
    assert not reached


def test_a_forbidden_import_is_found_wherever_it_hides(tmp_path: Path) -> None:
    (tmp_path / "testbed" / "deep").mkdir(parents=True)
    (tmp_path / "testbed" / "fine.py").write_text("import json\nfrom testbed.ports import free_ports\n")
    (tmp_path / "testbed" / "deep" / "bad.py").write_text(
        "def later():\n    from tests.e2e.conftest import PdPair\n    import bench.harness.run\n"
    )
    (tmp_path / "testbed" / "benches.py").write_text("import benchmark_tool\n")  # a prefix, not the package
    assert violations(tmp_path, "testbed", RULES["testbed"]) == {
        "testbed/deep/bad.py: tests.e2e.conftest",
        "testbed/deep/bad.py: bench.harness.run",
    }
