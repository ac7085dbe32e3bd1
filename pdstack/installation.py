"""The check that ``import pdstack`` gets pdstack's own ``infra`` and ``runtime``, not a user's package of that name.

pdstack installs three top-level packages: ``pdstack`` (the public surface), ``infra`` and ``runtime`` (the product's
layout fixes those names: the image runs ``python -m runtime`` and the docs, tests and ``python -m infra`` use them).
A platform repository often has an ``infra/`` folder of its own; run from there, it comes first on ``sys.path`` and
pdstack would import the user's code in place of its own, failing far from the cause. The check runs before any
``infra`` module is imported and looks only at where each name resolves (``importlib.util.find_spec`` of a
top-level name imports nothing).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOP_LEVEL_PACKAGES = ("infra", "runtime")
# Where pdstack's own packages live: beside this package (site-packages, or the repository root in a checkout).
INSTALLATION = Path(__file__).resolve().parents[1]


def resolved_locations(name: str) -> list[Path]:
    """The directories the top-level package ``name`` resolves to now (empty when it is not importable)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return [Path(spec.origin).resolve()] if spec is not None and spec.origin else []
    return [Path(location).resolve() for location in spec.submodule_search_locations]


def require_own_packages() -> None:
    """Raise ImportError naming the shadowing folder and what to rename when ``infra`` or ``runtime`` does not
    resolve to pdstack's own package alone."""
    for name in TOP_LEVEL_PACKAGES:
        ours = INSTALLATION / name
        found = resolved_locations(name)
        if found == [ours]:
            continue
        if not found:
            raise ImportError(
                f"pdstack's package {name!r} is missing beside {INSTALLATION / 'pdstack'}: reinstall pdstack"
            )
        raise ImportError(
            f"pdstack needs its own top-level package {name!r} ({ours}), but {name!r} resolves to "
            f"{', '.join(str(path) for path in found)}: a folder or package of yours has that name and comes first "
            f"on sys.path. Rename yours (e.g. to 'platform_{name}'), or run your app from a directory where it is "
            f"not importable. pdstack installs the top-level packages 'infra' and 'runtime' beside 'pdstack'."
        )
