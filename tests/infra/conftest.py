"""Synthesis fixtures: each deployment is synthesized ONCE per test session, with cdk-nag, and shared (through the
session's SynthesisCache, which a test's own variants go through too)."""

from __future__ import annotations

import pytest

from tests.support.synthesis import (
    SynthesisCache,
    Synthesized,
    every_instance_type,
    example_deployment,
    wide_ep_decode,
)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesisCache:
    """The session's synthesis cache: ``synthesized.get(deployment)`` synthesizes a deployment once per run."""
    return SynthesisCache(tmp_path_factory.mktemp)


@pytest.fixture(scope="session")
def default(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("default.yaml")


@pytest.fixture(scope="session")
def capacity_block(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("capacity-block.yaml")


@pytest.fixture(scope="session")
def all_types(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.get(every_instance_type())


@pytest.fixture(scope="session")
def hyperpod(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("hyperpod.yaml")


@pytest.fixture(scope="session")
def wide_ep(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.get(wide_ep_decode())


@pytest.fixture(scope="session")
def kv_tiers(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("kv-tiers.yaml")


@pytest.fixture(scope="session")
def two_models(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("two-models.yaml")


@pytest.fixture(scope="session")
def existing_cluster(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.shipped("existing-cluster.yaml")


@pytest.fixture(scope="session")
def team_app(synthesized: SynthesisCache) -> Synthesized:
    """pdstack's app from deployments/team_app's settings (the example's own stacks hold the same nodes and objects)."""
    return synthesized.get(example_deployment("team_app"))


@pytest.fixture(scope="session")
def team_app_existing(synthesized: SynthesisCache) -> Synthesized:
    return synthesized.get(example_deployment("team_app_existing"))
