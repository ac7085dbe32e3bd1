"""The host KV tier in the pods and the node check: a worker's /dev/shm holds the offload buffers of its engines
(vLLM 0.32 maps them there on CUDA: runtime/kv_offload.py), and a tier that does not fit the worker's share of the
node is refused with the numbers."""

from __future__ import annotations

import copy

import pytest

from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity.node_capacity import WORKER_PROCESS_ALLOWANCE_GIB, worker_resources
from infra.workload_names import worker_name
from runtime.roles import ROLES, Role
from tests.support.synthesis import load_yaml
from tests.support.workload_objects import find, objects_of, pod_spec


def shm_limit(deployment_data: dict, role: Role) -> str:
    deployment = parse_deployment(deployment_data)
    worker = find(objects_of(deployment), "Deployment", worker_name(role))
    (shm,) = [v for v in pod_spec(worker)["volumes"] if v["name"] == "shm"]
    return shm["emptyDir"]["sizeLimit"]


def test_the_shipped_tier_is_in_every_workers_shm() -> None:
    data = load_yaml("kv-tiers.yaml")
    tier = data["serving"]["kv_cache"]["host_offload_gib"]
    shm = data.get("workloads", {}).get("shm_gib", 20)
    for role in ROLES:
        assert shm_limit(data, role) == f"{shm + tier}Gi"


def test_every_data_parallel_engine_of_a_pod_has_its_own_buffer() -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["serving"]["kv_cache"] = {"host_offload_gib": 10.5}
    data["serving"]["prefill"].update({"data_parallel_local": 2, "data_parallel": 2})
    assert shm_limit(data, "prefill") == "41Gi"  # 20 + ceil(2 x 10.5)
    assert shm_limit(data, "decode") == "31Gi"  # 20 + ceil(10.5)


def test_without_a_tier_the_shm_is_as_configured() -> None:
    assert shm_limit(load_yaml("default.yaml"), "decode") == "20Gi"


def test_a_tier_larger_than_the_workers_memory_is_refused_with_the_numbers() -> None:
    data = copy.deepcopy(load_yaml("kv-tiers.yaml"))
    fits = parse_deployment(data)
    worker = worker_resources(fits, "decode")
    room_gib = worker.memory_mib // 1024 - 20 - WORKER_PROCESS_ALLOWANCE_GIB * fits.serving.decode.gpus_per_node
    data["serving"]["kv_cache"]["host_offload_gib"] = room_gib + 1
    with pytest.raises(DeploymentError) as error:
        parse_deployment(data)
    message = str(error.value)
    assert f"serving.kv_cache.host_offload_gib={room_gib + 1}" in message
    assert f"{worker.memory_mib}Mi" in message and f"at most {room_gib}" in message
    data["serving"]["kv_cache"]["host_offload_gib"] = room_gib
    parse_deployment(data)
