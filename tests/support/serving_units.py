"""The shipped several-model deployment (deployments/two-models.yaml) as data and parsed, for the tests that change
one field of it and render or check the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.config import Deployment, parse_deployment

FILE = Path(__file__).resolve().parents[2] / "deployments" / "two-models.yaml"


def two_models_data() -> dict[str, Any]:
    """two-models.yaml: the default's Llama 3.1 8B and a Llama 3.3 70B (tensor parallel 4) on one p5
    pool; the second model brings its own router workload; m7i.2xlarge system nodes hold the four routers."""
    return yaml.safe_load(FILE.read_text())


def two_model_deployment(data: dict[str, Any] | None = None) -> Deployment:
    return parse_deployment(two_models_data() if data is None else data, FILE.name)
