"""The session's synthesis cache (tests/support/synthesis.py): a deployment is synthesized once however many tests
ask for it, shipped file or a variant built in a test; a different deployment is synthesized on its own."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from infra.config import Deployment, parse_deployment
from tests.support.synthesis import SynthesisCache, Synthesized, load_yaml


def test_each_deployment_is_synthesized_once(tmp_path: Path) -> None:
    synthesized: list[tuple[str, Path]] = []

    def synth(deployment: Deployment, outdir: Path) -> Any:
        synthesized.append((deployment.name, outdir))
        return object()

    cache = SynthesisCache(lambda name: tmp_path / f"{name}-{len(synthesized)}", synth)
    shipped = cache.shipped("default.yaml")
    variant = copy.deepcopy(load_yaml("default.yaml"))
    variant["observability"] = {"enabled": False}
    first_variant = cache.get(parse_deployment(variant))

    assert cache.shipped("default.yaml") is shipped
    assert cache.get(parse_deployment(load_yaml("default.yaml"))) is shipped  # the same content, parsed again
    assert cache.get(parse_deployment(copy.deepcopy(variant))) is first_variant
    assert first_variant is not shipped
    assert cache.synth_calls == len(synthesized) == 2
    assert len({outdir for _, outdir in synthesized}) == 2  # each synthesis in a directory of its own


def test_the_session_fixtures_come_from_the_cache(synthesized: SynthesisCache, default: Synthesized) -> None:
    assert synthesized.shipped("default.yaml") is default
