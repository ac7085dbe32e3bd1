"""The operations commands read stacks by name and outputs by key: both must be what the stacks really emit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.stack_outputs import READ_BY_OPERATIONS, stack_name, stack_names
from tests.support.synthesis import Synthesized

OPERATIONS = [
    *sorted((Path(__file__).resolve().parents[2] / "infra" / "operations").glob("*.py")),
    Path(__file__).resolve().parents[2] / "infra" / "__main__.py",
]


@pytest.mark.parametrize("fixture", ["default", "hyperpod", "existing_cluster"])
def test_the_operations_find_the_stacks_and_the_outputs_they_read(request: pytest.FixtureRequest, fixture: str) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    deployed = {stack.stack_name: stack for stack in synth.stacks.all}
    assert sorted(deployed) == sorted(
        stack_names(
            synth.deployment.name,
            synth.deployment.hyperpod is not None,
            synth.deployment.observability.enabled,
            synth.deployment.network.existing is None,
        )
    )
    templates = {"image": synth.image, "cluster": synth.cluster, "hyperpod": synth.hyperpod}
    for part, keys in READ_BY_OPERATIONS.items():
        template = templates[part]
        if template is None:
            continue
        assert stack_name(synth.deployment.name, part) in deployed
        emitted = set(template.to_json().get("Outputs", {}))
        assert set(keys) <= emitted, (part, set(keys) - emitted)


@pytest.mark.parametrize("path", OPERATIONS, ids=lambda p: p.name)
def test_outputs_are_read_through_the_shared_names(path: Path) -> None:
    """A literal key (outputs["ClusterName"]) would pass every test above and break on the next rename."""
    text = path.read_text()
    assert not re.findall(r"outputs(?:\.get\(|\[)\s*[\"']", text), path
    assert not re.findall(r"f\"\{[^}]*\}-(?:network|image|cluster|hyperpod|workloads)\"", text), path
