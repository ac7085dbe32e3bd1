from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config import Serving
from runtime.host_probe import Host, LwsPlacement
from runtime.worker import DecodeWorker, Launch, LaunchError, PrefillWorker
from tests.support.runtime_inputs import p5_host, serving

REPO = Path(__file__).resolve().parents[2]


def flag(launch: Launch, name: str) -> str:
    return launch.argv[launch.argv.index(name) + 1]


def kv_config(launch: Launch) -> dict[str, object]:
    return json.loads(flag(launch, "--kv-transfer-config"))


def test_single_node_tp8_decode_on_p5_with_efa() -> None:
    config = serving(decode={"tensor_parallel": 8}, prefill={"tensor_parallel": 8})
    launch = DecodeWorker(config, p5_host(), "/cache/models/llama-3-8b", {"LD_LIBRARY_PATH": "/usr/lib"}).launch()
    assert launch.argv[:3] == ["vllm", "serve", "/cache/models/llama-3-8b"]
    assert flag(launch, "--tensor-parallel-size") == "8"
    assert "--data-parallel-size" not in launch.argv
    assert kv_config(launch) == {
        "kv_connector": "NixlConnector",
        "kv_role": "kv_consumer",
        "kv_buffer_device": "cuda",
        "kv_load_failure_policy": "fail",
        "kv_connector_extra_config": {"backends": ["LIBFABRIC"], "kv_lease_duration": 30},
    }
    assert json.loads(flag(launch, "--kv-events-config")) == {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": "tcp://*:5557",
        "topic": "kv@10.1.2.3:8000@llama",
    }
    assert launch.env == {
        "VLLM_NIXL_SIDE_CHANNEL_HOST": "10.1.2.3",
        "VLLM_NIXL_SIDE_CHANNEL_PORT": "5600",
        "NCCL_SOCKET_IFNAME": "eth0",
        "GLOO_SOCKET_IFNAME": "eth0",
        "FI_PROVIDER": "efa",
        "NIXL_LIBFABRIC_NUM_THREADS": "4",
        "FI_EFA_USE_DEVICE_RDMA": "1",
        "LD_LIBRARY_PATH": "/opt/amazon/efa/lib:/usr/lib",
        "HF_HUB_OFFLINE": "1",
    }
    assert any("LIBFABRIC: auto, 32 EFA devices" in reason for reason in launch.reasons)


def test_prefill_is_the_kv_producer() -> None:
    launch = PrefillWorker(serving(), p5_host(), "/m", {}).launch()
    assert kv_config(launch)["kv_role"] == "kv_producer"


def test_cpu_testbed(cpu_host: Host) -> None:
    config = serving(
        model={"source": "/work/tiny", "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        prefill={
            "bind_address": "127.0.0.1",
            "ports": {"http": 18100, "nixl_side_channel": 15600},
            "extra_args": ["--enforce-eager"],
            "extra_env": {"VLLM_CPU_OMP_THREADS_BIND": "0"},
        },
    )
    launch = PrefillWorker(config, cpu_host, "/work/tiny", {}).launch()
    assert launch.argv == [
        "vllm",
        "serve",
        "/work/tiny",
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "18100",
        "--shutdown-timeout",
        "90",
        "--tensor-parallel-size",
        "1",
        "--block-size",
        "32",
        "--enable-prefix-caching",
        "--prefix-caching-hash-algo",
        "sha256_cbor",
        "--gpu-memory-utilization",
        "0.9",
        "--max-model-len",
        "1024",
        "--kv-transfer-config",
        flag(launch, "--kv-transfer-config"),
        "--kv-events-config",
        flag(launch, "--kv-events-config"),
        "--enforce-eager",
    ]
    kv = kv_config(launch)
    assert kv["kv_buffer_device"] == "cpu"
    assert kv["kv_connector_extra_config"] == {"backends": ["UCX"], "kv_lease_duration": 30}
    assert launch.env == {
        "VLLM_NIXL_SIDE_CHANNEL_HOST": "127.0.0.1",
        "VLLM_NIXL_SIDE_CHANNEL_PORT": "15600",
        "NCCL_SOCKET_IFNAME": "lo",
        "GLOO_SOCKET_IFNAME": "lo",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "0",
    }
    assert "no EFA variables: no EFA device in /sys/class/infiniband" in launch.reasons


@pytest.mark.parametrize("worker_index", [0, 1])
def test_two_node_wide_ep_decode_replica_from_lws_variables(worker_index: int) -> None:
    config = serving(
        decode={
            "nodes_per_replica": 2,
            "data_parallel_local": 8,
            "data_parallel": 16,
            "expert_parallel": True,
            "all2all_backend": "allgather_reducescatter",
            "ports": {"nixl_side_channel": 6600, "kv_events": 6700},
        },
    )
    lws = LwsPlacement(leader_address="decode-0.decode.ns", group_size=2, worker_index=worker_index)
    launch = DecodeWorker(config, p5_host(lws=lws), "/m", {}).launch()
    parallel = launch.argv[launch.argv.index("--tensor-parallel-size") : launch.argv.index("--block-size")]
    assert parallel == [
        "--tensor-parallel-size",
        "1",
        "--data-parallel-size",
        "16",
        "--data-parallel-size-local",
        "8",
        "--data-parallel-address",
        "decode-0.decode.ns",
        "--data-parallel-rpc-port",
        "5555",
        "--data-parallel-start-rank",
        str(8 * worker_index),
        "--data-parallel-hybrid-lb",
        "--enable-expert-parallel",
        "--all2all-backend",
        "allgather_reducescatter",
    ]
    assert any(f"node {worker_index} of 2" in reason for reason in launch.reasons)


def test_libfabric_is_chosen_on_efa_and_ucx_elsewhere(cpu_host: Host) -> None:
    assert kv_config(DecodeWorker(serving(), p5_host(efa=32), "/m", {}).launch())["kv_connector_extra_config"] == {
        "backends": ["LIBFABRIC"],
        "kv_lease_duration": 30,
    }
    no_efa = DecodeWorker(serving(), p5_host(efa=0), "/m", {}).launch()
    assert kv_config(no_efa)["kv_connector_extra_config"] == {"backends": ["UCX"], "kv_lease_duration": 30}
    assert not {"FI_PROVIDER", "LD_LIBRARY_PATH", "NIXL_LIBFABRIC_NUM_THREADS"} & set(no_efa.env)
    forced = serving(kv_transfer={"backend": "UCX"})
    assert kv_config(DecodeWorker(forced, p5_host(efa=32), "/m", {}).launch())["kv_connector_extra_config"] == {
        "backends": ["UCX"],
        "kv_lease_duration": 30,
    }
    forced = serving(kv_transfer={"backend": "LIBFABRIC"}, model={"source": "/m", "served_name": "m", "block_size": 32})
    assert kv_config(DecodeWorker(forced, cpu_host, "/m", {}).launch())["kv_connector_extra_config"] == {
        "backends": ["LIBFABRIC"],
        "kv_lease_duration": 30,
    }


def test_efa_library_path_is_not_repeated() -> None:
    launch = DecodeWorker(serving(), p5_host(), "/m", {"LD_LIBRARY_PATH": "/x:/opt/amazon/efa/lib"}).launch()
    assert launch.env["LD_LIBRARY_PATH"] == "/x:/opt/amazon/efa/lib"


def test_extra_arguments_come_last_and_extra_env_wins() -> None:
    config = serving(decode={"extra_args": ["--max-num-seqs", "64"], "extra_env": {"FI_PROVIDER": "tcp"}})
    launch = DecodeWorker(config, p5_host(), "/m", {}).launch()
    assert launch.argv[-2:] == ["--max-num-seqs", "64"]
    assert launch.env["FI_PROVIDER"] == "tcp"


def test_kv_events_can_be_switched_off_and_hub_access_drops_offline_mode() -> None:
    config = serving(
        kv_events={"enabled": False}, model={"source": "org/model", "served_name": "m", "hub_access": True}
    )
    launch = DecodeWorker(config, p5_host(), "org/model", {}).launch()
    assert "--kv-events-config" not in launch.argv
    assert "HF_HUB_OFFLINE" not in launch.env


def test_exec_environment_lays_the_decisions_over_the_pod_environment(cpu_host: Host) -> None:
    config = serving(model={"source": "/m", "served_name": "m", "block_size": 32})
    launch = DecodeWorker(config, cpu_host, "/m", {}).launch()
    merged = launch.exec_environment({"PATH": "/bin", "VLLM_NIXL_SIDE_CHANNEL_HOST": "stale"})
    assert merged["PATH"] == "/bin" and merged["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"


def test_cpu_platform_refuses_a_block_size_it_cannot_take(cpu_host: Host) -> None:
    with pytest.raises(
        LaunchError,
        match=r"serving.model.block_size=16 cannot be used on the CPU platform .* "
        r"multiple of 32",
    ):
        DecodeWorker(serving(model={"source": "/m", "served_name": "m", "block_size": 16}), cpu_host, "/m", {}).launch()


def test_cpu_platform_refuses_a_cuda_kv_buffer(cpu_host: Host) -> None:
    config = serving(
        model={"source": "/m", "served_name": "m", "block_size": 32}, kv_transfer={"buffer_device": "cuda"}
    )
    with pytest.raises(ValueError, match="buffer_device='cuda' but this host has no GPU"):
        DecodeWorker(config, cpu_host, "/m", {}).launch()


def test_too_few_visible_gpus_are_refused() -> None:
    with pytest.raises(
        LaunchError, match="tensor_parallel=8 x data_parallel_local=1 needs 8 GPUs, but this container sees 4"
    ):
        DecodeWorker(serving(decode={"tensor_parallel": 8}), p5_host(gpus=4), "/m", {}).launch()


def test_multi_node_replica_needs_matching_lws_variables() -> None:
    config = serving(decode={"nodes_per_replica": 2, "data_parallel_local": 8, "data_parallel": 16})
    with pytest.raises(LaunchError, match="nodes_per_replica=2 needs the LeaderWorkerSet variables"):
        DecodeWorker(config, p5_host(), "/m", {}).launch()
    wrong = LwsPlacement(leader_address="l", group_size=3, worker_index=0)
    with pytest.raises(LaunchError, match="nodes_per_replica=2 but LWS_GROUP_SIZE=3"):
        DecodeWorker(config, p5_host(lws=wrong), "/m", {}).launch()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dry_run_prints_argv_env_and_host_and_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text(f"model: {{source: {tmp_path}, served_name: tiny, block_size: 32}}\n")
    result = run_cli("decode", "--dry-run", env={"PDSTACK_CONFIG": str(config), "POD_IP": "127.0.0.1", "PATH": "/bin"})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"argv", "env", "host"}
    assert document["argv"][:3] == ["vllm", "serve", str(tmp_path)]
    assert document["env"]["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"
    assert document["host"]["pod_ip"] == "127.0.0.1"


def test_invalid_configuration_exits_2_with_a_json_log_line(tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("model: {source: /m, served_name: m}\ndecode: {tensor_parallel: 16}\n")
    result = run_cli("decode", "--config", str(config), "--dry-run", env={"PATH": "/bin"})
    assert result.returncode == 2
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["event"] == "invalid_configuration" and line["level"] == "error"
    assert any("= 16 GPUs exceeds the 8 GPUs of p5.48xlarge" in problem for problem in line["problems"])


def test_lws_worker_index_outside_the_group_is_refused() -> None:
    config = serving(decode={"nodes_per_replica": 2, "data_parallel_local": 8, "data_parallel": 16})
    stray = LwsPlacement(leader_address="l", group_size=2, worker_index=2)
    with pytest.raises(LaunchError, match=r"LWS_WORKER_INDEX=2 is outside 0..1"):
        DecodeWorker(config, p5_host(lws=stray), "/m", {}).launch()


def test_expert_parallel_on_a_dense_model_is_refused_and_on_a_moe_model_counted(tmp_path: Path) -> None:
    dense, moe = tmp_path / "dense", tmp_path / "moe"
    for directory, model_config in ((dense, {"architectures": ["LlamaForCausalLM"]}), (moe, {"num_experts": 128})):
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(model_config))
    config = serving(decode={"data_parallel_local": 8, "data_parallel": 8, "expert_parallel": True})
    with pytest.raises(
        LaunchError,
        match=r"serving.decode.expert_parallel=true, but the model at .*LlamaForCausalLM\) "
        r"is dense: its config.json sets none of num_experts, .*set serving.decode.expert_parallel: false",
    ):
        DecodeWorker(config, p5_host(), str(dense), {}).launch()
    launch = DecodeWorker(config, p5_host(), str(moe), {}).launch()
    assert "--enable-expert-parallel" in launch.argv
    assert any("the 128 experts" in reason for reason in launch.reasons)


def test_expert_parallel_on_a_dense_model_exits_2_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "num_experts": 0}))
    config = tmp_path / "serving.yaml"
    config.write_text(
        f"model: {{source: {tmp_path}, served_name: tiny, block_size: 32}}\n"
        "decode: {expert_parallel: true, data_parallel_local: 2, data_parallel: 2}\n"
    )
    result = run_cli("decode", "--dry-run", env={"PDSTACK_CONFIG": str(config), "POD_IP": "127.0.0.1", "PATH": "/bin"})
    assert result.returncode == 2, result.stdout
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["event"] == "cannot_start"
    assert "serving.decode.expert_parallel=true, but the model at" in line["reason"]


def two_node_decode(backend: str) -> Serving:
    return serving(
        decode={
            "nodes_per_replica": 2,
            "data_parallel_local": 8,
            "data_parallel": 16,
            "expert_parallel": True,
            "all2all_backend": backend,
        }
    )


def test_a_group_across_efa_nodes_points_nccl_at_the_aws_ofi_nccl_plugin() -> None:
    plugin = Path("/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net.so")
    lws = LwsPlacement(leader_address="decode-0.decode.ns", group_size=2, worker_index=1)
    launch = DecodeWorker(
        two_node_decode("allgather_reducescatter"),
        p5_host(lws=lws),
        "/m",
        {"LD_LIBRARY_PATH": "/usr/lib"},
        find_ofi_plugin=lambda: plugin,
    ).launch()
    assert launch.env["NCCL_NET_PLUGIN"] == str(plugin)
    assert launch.env["NCCL_NVLS_ENABLE"] == "0"
    assert launch.env["LD_LIBRARY_PATH"] == f"/opt/amazon/efa/lib:{plugin.parent}:/usr/lib"
    assert "NCCL_GIN_ENABLE" not in launch.env
    gin = DecodeWorker(two_node_decode("deepep_v2"), p5_host(lws=lws), "/m", {}, find_ofi_plugin=lambda: plugin)
    assert {k: v for k, v in gin.launch().env.items() if "_GIN_" in k} == {
        "NCCL_GIN_ENABLE": "1",
        "NCCL_GIN_TYPE": "2",
        "OFI_NCCL_GIN_GDAKI": "0",
    }


def test_a_one_node_replica_leaves_nccl_to_nvlink() -> None:
    launch = DecodeWorker(serving(), p5_host(), "/m", {}, find_ofi_plugin=lambda: Path("/x/libnccl-net.so")).launch()
    assert not {"NCCL_NET_PLUGIN", "NCCL_NVLS_ENABLE"} & set(launch.env)


def test_a_host_tier_puts_nixl_and_the_offloading_connector_in_one_multiconnector() -> None:
    """vLLM 0.32's --kv-offloading-size would replace NIXL; the worker writes the MultiConnector itself, NIXL first
    (a P/D pull must win the request) and the host tier second (runtime/kv_offload.py)."""
    config = serving(kv_cache={"host_offload_gib": 64.5})
    launch = DecodeWorker(config, p5_host(), "/m", {}).launch()
    kv = kv_config(launch)
    assert "--kv-offloading-size" not in launch.argv
    assert (kv["kv_connector"], kv["kv_role"]) == ("MultiConnector", "kv_consumer")
    nixl, offload = kv["kv_connector_extra_config"]["connectors"]  # type: ignore[index]
    assert nixl == kv_config(DecodeWorker(serving(), p5_host(), "/m", {}).launch())
    assert offload == {
        "kv_connector": "OffloadingConnector",
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"cpu_bytes_to_use": int(64.5 * 2**30), "self_describing_kv_events": True},
    }
    assert any("host KV tier 64.5 GiB" in reason for reason in launch.reasons)


def test_a_host_tier_on_the_cpu_platform_is_refused_by_name(cpu_host: Host) -> None:
    config = serving(kv_cache={"host_offload_gib": 8})
    with pytest.raises(ValueError, match=r"serving.kv_cache.host_offload_gib=8 needs a CUDA GPU .* set it to 0"):
        PrefillWorker(config, cpu_host, "/m", {}).launch()
