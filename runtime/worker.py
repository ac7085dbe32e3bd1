"""The prefill and decode workers: one serving configuration plus the probed host become a ``vllm serve`` command
and its environment, which the worker then becomes (``os.execvpe``: signals reach vLLM, no wrapper is left).

The command is built in a fixed order: model, identity, listening, parallelism, cache, KV transfer, KV events, then
the role's extra arguments last (so a user can override anything). The environment holds only what the runtime
decides (printed by ``--dry-run``); at exec it is laid over the pod's own environment, the role's ``extra_env`` last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from runtime.catalog import instance_spec
from runtime.config import CPU_BLOCK_SIZE_MULTIPLE, RoleSettings, Serving
from runtime.efa_environment import FabricEnvironment
from runtime.engine_check import EngineVersions
from runtime.host_probe import Host
from runtime.json_log import EventLog
from runtime.kv_transfer import KvRole, KvTransferPlan
from runtime.moe_model import EXPERT_COUNT_KEYS, ModelConfigError, architectures, expert_count, read_model_config
from runtime.nccl_environment import NcclEnvironment, find_ofi_plugin
from runtime.roles import Role

log = EventLog("runtime.worker")


DRAIN_S = 90
"""vLLM's --shutdown-timeout: on SIGTERM it stops taking requests and lets those in flight finish this long (vLLM
0.32's default, 0, aborts them). The worker pod's preStop and this must fit in its terminationGracePeriodSeconds
(infra/workloads/worker_objects.py, held together by tests/infra/test_workloads.py)."""


class LaunchError(ValueError):
    """The configuration cannot run on this host; the message names the field, the value and what is valid."""


class Launch(BaseModel):
    """Everything a worker decided: the vLLM command, the environment it sets, the host it saw, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    argv: list[str]
    env: dict[str, str]
    host: Host
    reasons: list[str]

    def dry_run(self) -> dict[str, Any]:
        """The ``--dry-run`` document: exactly ``argv``, ``env`` and ``host``."""
        return {"argv": self.argv, "env": self.env, "host": self.host.model_dump(mode="json")}

    def exec_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        return {**environ, **self.env}


class Worker:
    """A vLLM worker of one role. Subclasses say which role and which side of the KV transfer it is."""

    role_name: ClassVar[Role]
    kv_role: ClassVar[KvRole]

    def __init__(
        self,
        serving: Serving,
        host: Host,
        model_path: str,
        environ: Mapping[str, str],
        find_ofi_plugin: Callable[[], Path | None] = find_ofi_plugin,
    ) -> None:
        self.find_ofi_plugin = find_ofi_plugin
        self.serving = serving
        self.role: RoleSettings = serving.role(self.role_name)
        self.host = host
        self.model_path = model_path
        self.environ = environ

    def launch(self) -> Launch:
        self._check_host()
        model_reasons = self._check_model()
        kv = KvTransferPlan.resolve(self.serving.kv_transfer, self.kv_role, self.host, self.serving.kv_cache)
        fabric = FabricEnvironment.resolve(
            self.host, instance_spec(self.role.instance_type), self.environ, self._nccl_across_nodes()
        )
        argv = [
            "vllm",
            "serve",
            self.model_path,
            *self._identity_args(),
            *self._parallel_args(),
            *self._cache_args(),
            "--kv-transfer-config",
            kv.vllm_json(),
            *self._kv_events_args(),
            *self.role.extra_args,
        ]
        env = {
            "VLLM_NIXL_SIDE_CHANNEL_HOST": self.host.pod_ip,
            "VLLM_NIXL_SIDE_CHANNEL_PORT": str(self.role.ports.nixl_side_channel),
            **fabric.env,
        }
        if not self.serving.model.hub_access:
            env["HF_HUB_OFFLINE"] = "1"
        env.update(self.role.extra_env)
        reasons = [*kv.reasons, *fabric.reasons, *self._parallel_reasons(), *model_reasons]
        return Launch(role=self.role_name, argv=argv, env=env, host=self.host, reasons=reasons)

    def exec(self, launch: Launch, engine: EngineVersions) -> None:
        """Log the decision and the engine it starts in one line, then become vLLM."""
        log.info(
            "worker_exec",
            role=launch.role,
            argv=launch.argv,
            env=launch.env,
            host=launch.host.model_dump(mode="json"),
            engine=engine.model_dump(mode="json"),
            reasons=launch.reasons,
        )
        os.execvpe(launch.argv[0], launch.argv, launch.exec_environment(self.environ))

    def _check_host(self) -> None:
        field = f"serving.{self.role_name}"
        host, role = self.host, self.role
        if host.platform == "cpu" and self.serving.model.block_size % CPU_BLOCK_SIZE_MULTIPLE:
            raise LaunchError(
                f"serving.model.block_size={self.serving.model.block_size} cannot be used on the CPU platform "
                f"(this host has no GPU): it needs a multiple of {CPU_BLOCK_SIZE_MULTIPLE}"
            )
        if host.platform == "cuda" and host.gpus < role.gpus_per_node:
            raise LaunchError(
                f"{field}.tensor_parallel={role.tensor_parallel} x data_parallel_local={role.data_parallel_local} "
                f"needs {role.gpus_per_node} GPUs, but this container sees {host.gpus}"
            )
        if role.nodes_per_replica > 1:
            if host.lws is None:
                raise LaunchError(
                    f"{field}.nodes_per_replica={role.nodes_per_replica} needs the LeaderWorkerSet variables "
                    "LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX; none is set"
                )
            if host.lws.group_size != role.nodes_per_replica:
                raise LaunchError(
                    f"{field}.nodes_per_replica={role.nodes_per_replica} but LWS_GROUP_SIZE={host.lws.group_size}; "
                    "they must be equal"
                )
            if not 0 <= host.lws.worker_index < role.nodes_per_replica:
                raise LaunchError(
                    f"LWS_WORKER_INDEX={host.lws.worker_index} is outside 0..{role.nodes_per_replica - 1} "
                    f"({field}.nodes_per_replica={role.nodes_per_replica})"
                )

    def _nccl_across_nodes(self) -> NcclEnvironment | None:
        """The NCCL environment of a replica whose collectives cross nodes; None for a one-node replica."""
        if self.role.nodes_per_replica == 1:
            return None
        backend = self.role.all2all_backend if self.role.expert_parallel else None
        return NcclEnvironment.resolve(backend, find_plugin=self.find_ofi_plugin)

    def _check_model(self) -> list[str]:
        """Expert parallelism needs a mixture-of-experts model (vLLM 0.32 refuses to start otherwise:
        ``ModelConfig._verify_with_expert_parallelism``): read the fetched config.json as vLLM counts experts."""
        if not self.role.expert_parallel:
            return []
        field = f"serving.{self.role_name}.expert_parallel"
        try:
            config = read_model_config(Path(self.model_path))
        except ModelConfigError as error:
            raise LaunchError(f"{field}=true needs the model's expert count: {error}") from error
        if config is None:
            return [f"{field}: {self.model_path} is not a local directory yet; vLLM checks the model has experts"]
        experts = expert_count(config)
        if experts == 0:
            raise LaunchError(
                f"{field}=true, but the model at {self.model_path} ({architectures(config)}) is dense: its config.json "
                f"sets none of {', '.join(EXPERT_COUNT_KEYS)}. Expert parallelism applies to mixture-of-experts models "
                f"only (DeepSeek-V2/V3/R1, Qwen2/Qwen3-MoE, Mixtral, Llama 4, gpt-oss, ...); set {field}: false"
            )
        return [f"expert parallelism over the {experts} experts of {architectures(config)}"]

    def _identity_args(self) -> list[str]:
        role = self.role
        return [
            "--served-model-name",
            self.serving.model.served_name,
            "--host",
            role.bind_address,
            "--port",
            str(role.ports.http),
            "--shutdown-timeout",
            str(DRAIN_S),
        ]

    def _parallel_args(self) -> list[str]:
        role = self.role
        args = ["--tensor-parallel-size", str(role.tensor_parallel)]
        if role.data_parallel > 1:
            args += ["--data-parallel-size", str(role.data_parallel)]
            args += ["--data-parallel-size-local", str(role.data_parallel_local)]
        if role.nodes_per_replica > 1 and self.host.lws is not None:
            args += [
                "--data-parallel-address",
                self.host.lws.leader_address,
                "--data-parallel-rpc-port",
                str(role.ports.dp_rpc),
                "--data-parallel-start-rank",
                str(self.host.lws.worker_index * role.data_parallel_local),
                # Explicit on every node, leader included: vLLM <= 0.27 read the leader's start rank 0 as unset and
                # exited ("Remote engine 2 must use --headless unless in external or hybrid dp lb mode"); 0.32 infers
                # the mode from the start rank. Each node serves HTTP for its own ranks (tests/e2e/
                # test_wide_ep_argv_in_vllm.py parses this in the pinned vLLM).
                "--data-parallel-hybrid-lb",
            ]
        if role.expert_parallel:
            args.append("--enable-expert-parallel")
        if role.all2all_backend:
            args += ["--all2all-backend", role.all2all_backend]
        return args

    def _parallel_reasons(self) -> list[str]:
        lws = self.host.lws
        if self.role.nodes_per_replica == 1 or lws is None:
            return []
        first = lws.worker_index * self.role.data_parallel_local
        return [
            (
                f"multi-node replica: node {lws.worker_index} of {lws.group_size}, data-parallel ranks "
                f"{first}-{first + self.role.data_parallel_local - 1} of {self.role.data_parallel}, coordinated by "
                f"{lws.leader_address}; every node serves HTTP for its own ranks (vLLM hybrid load balancing)"
            )
        ]

    def _cache_args(self) -> list[str]:
        model = self.serving.model
        args = [
            "--block-size",
            str(model.block_size),
            "--enable-prefix-caching",
            "--prefix-caching-hash-algo",
            model.prefix_cache_hash,
            "--gpu-memory-utilization",
            str(self.role.gpu_memory_utilization),
        ]
        if model.max_model_len is not None:
            args += ["--max-model-len", str(model.max_model_len)]
        return args

    def _kv_events_args(self) -> list[str]:
        if not self.serving.kv_events.enabled:
            return []
        config = {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://*:{self.role.ports.kv_events}",
            "topic": f"kv@{self.host.pod_ip}:{self.role.ports.http}@{self.serving.model.served_name}",
        }
        return ["--kv-events-config", json.dumps(config, separators=(",", ":"))]


class PrefillWorker(Worker):
    """Computes the prompt's KV and holds it for decode to pull (NIXL ``kv_producer``)."""

    role_name = "prefill"
    kv_role = "kv_producer"


class DecodeWorker(Worker):
    """Pulls the prompt's KV from a prefill worker and generates (NIXL ``kv_consumer``)."""

    role_name = "decode"
    kv_role = "kv_consumer"


WORKERS: dict[Role, type[Worker]] = {"prefill": PrefillWorker, "decode": DecodeWorker}
