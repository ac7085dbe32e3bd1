"""A deployment of several models (infra/config/serving_units.py) for the tests that render or check one: the
default deployment's model and a second, larger one on the same GPU pool, each its own serving unit."""

from __future__ import annotations

import copy
from typing import Any

from infra.config import Deployment, parse_deployment
from tests.support.synthesis import load_yaml

SECOND_MODEL = {
    "model": {
        "source": "s3://my-models/meta-llama/Llama-3.3-70B-Instruct",
        "served_name": "llama-3.3-70b-instruct",
    },
    "prefill": {"instance_type": "p5.48xlarge", "tensor_parallel": 4},
    "decode": {"instance_type": "p5.48xlarge", "tensor_parallel": 4},
}


def two_models_data() -> dict[str, Any]:
    """default.yaml with its serving section as the first of two models; the second brings its own router workload.
    Four routers do not fit the default's two m7i.xlarge system nodes: the system nodes are m7i.2xlarge."""
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["name"] = "two-models"
    data["cluster"]["system_instance_type"] = "m7i.2xlarge"
    first = data.pop("serving")
    data["models"] = [
        {"name": "llama-8b", "serving": first},
        {
            "name": "llama-70b",
            "serving": copy.deepcopy(SECOND_MODEL),
            "workloads": {"router": {"cpu": "1", "memory": "2Gi", "allowed_client_cidrs": ["10.0.0.0/16"]}},
        },
    ]
    return data


def two_models(data: dict[str, Any] | None = None) -> Deployment:
    return parse_deployment(two_models_data() if data is None else data, "two-models")
