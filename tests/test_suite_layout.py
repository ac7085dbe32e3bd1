"""The suite's layout: shared helpers live in the test-support package (tests/support/), conftests only define
fixtures, and no test module imports another test module or a conftest. A helper imported from a test module runs
that module's import side effects (fixtures re-registered, a second vLLM pair started under a new module scope),
and a conftest used as a library hides where a helper lives."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every absolute module an import statement names (``from a.b import c`` names a.b and a.b.c), anywhere in
    the module, function-local imports included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return sorted(found)


def forbidden_imports(path: Path, source: str) -> list[str]:
    """``path:line module`` for each import of a test module (tests.*.test_*) or a conftest (tests.*.conftest)."""

    def forbidden(module: str) -> bool:
        parts = module.split(".")
        return parts[0] == "tests" and any(p == "conftest" or p.startswith("test_") for p in parts[1:])

    flagged = [(line, module) for line, module in imported_modules(ast.parse(source)) if forbidden(module)]
    # one line per import: ``from tests.x.test_y import a`` names tests.x.test_y, not also tests.x.test_y.a
    return [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for line, module in flagged
        if (line, module.rpartition(".")[0]) not in flagged
    ]


def test_no_test_module_or_conftest_is_imported() -> None:
    problems = [
        problem for path in sorted(TESTS.rglob("*.py")) for problem in forbidden_imports(path, path.read_text())
    ]
    assert not problems, "move the shared helper into tests/support/:\n" + "\n".join(problems)


def test_the_check_sees_module_and_function_level_imports() -> None:
    source = (
        "from tests.infra.conftest import load_yaml\n"
        "def f():\n    from tests.runtime.router import test_slow_clients\n"
        "import tests.e2e.test_router_on_vllm\n"
        "from tests.support.synthesis import load_yaml\n"
    )
    assert forbidden_imports(TESTS / "example.py", source) == [
        "tests/example.py:1 imports tests.infra.conftest",
        "tests/example.py:3 imports tests.runtime.router.test_slow_clients",
        "tests/example.py:4 imports tests.e2e.test_router_on_vllm",
    ]


def test_conftests_define_fixtures_and_hooks_only() -> None:
    """A conftest's top-level functions are fixtures or pytest hooks; classes and helper functions belong in
    tests/support/."""
    problems = []
    for path in sorted(TESTS.rglob("conftest.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                problems.append(f"{path.relative_to(TESTS.parent)}: class {node.name}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorated = any("fixture" in ast.unparse(d) for d in node.decorator_list)
                if not decorated and not node.name.startswith("pytest_"):
                    problems.append(f"{path.relative_to(TESTS.parent)}: def {node.name}")
    assert not problems, "helpers in conftests (move them to tests/support/):\n" + "\n".join(problems)
