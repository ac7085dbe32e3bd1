from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from runtime.config import CONFIG_ENV, Serving, explain, load_serving
from tests.support.runtime_inputs import serving


def problems(**sections: object) -> str:
    with pytest.raises(ValidationError) as caught:
        serving(**sections)
    return "\n".join(explain(caught.value))


def test_defaults_describe_a_p5_pair() -> None:
    config = serving()
    assert config.prefill.instance_type == config.decode.instance_type == "p5.48xlarge"
    assert config.model.block_size == 128
    assert config.kv_transfer.backend == "auto"
    assert config.instance_types() == {"p5.48xlarge"}


def test_prefill_tp_larger_than_decode_tp_is_refused() -> None:
    message = problems(prefill={"tensor_parallel": 4}, decode={"tensor_parallel": 2})
    assert "serving.prefill.tensor_parallel=4 is larger than serving.decode.tensor_parallel=2" in message
    assert "prefill TP <= the decode TP" in message


def test_tp_times_dp_local_beyond_the_catalog_gpus_is_refused() -> None:
    message = problems(decode={"tensor_parallel": 4, "data_parallel_local": 4, "data_parallel": 4})
    assert "serving.decode.tensor_parallel=4 x serving.decode.data_parallel_local=4 = 16 GPUs" in message
    assert "exceeds the 8 GPUs of p5.48xlarge" in message


def test_block_size_the_gpus_cannot_take_is_refused() -> None:
    message = problems(model={"source": "/models/x", "served_name": "x", "block_size": 24})
    assert "serving.model.block_size=24 cannot be used on the CUDA GPUs of p5.48xlarge" in message
    assert "valid block sizes: 16, 32, 64, 128, 256" in message


def test_colliding_ports_are_refused() -> None:
    message = problems(decode={"ports": {"http": 8000, "nixl_side_channel": 8000}})
    assert (
        "serving.decode.ports.http=8000 (ports 8000) collides with serving.decode.ports.nixl_side_channel=8000"
        in message
    )


def test_per_rank_port_ranges_collide_across_data_parallel_ranks() -> None:
    message = problems(
        decode={"data_parallel_local": 8, "data_parallel": 8, "ports": {"nixl_side_channel": 5600, "kv_events": 5605}}
    )
    assert "nixl_side_channel=5600 (ports 5600-5607) collides with serving.decode.ports.kv_events=5605" in message


def test_total_data_parallel_must_match_nodes_times_local() -> None:
    message = problems(decode={"nodes_per_replica": 2, "data_parallel_local": 8, "data_parallel": 8})
    assert "serving.decode.data_parallel=8 must equal data_parallel_local=8 x nodes_per_replica=2 = 16" in message


def test_all2all_backend_needs_expert_parallel() -> None:
    message = problems(prefill={"all2all_backend": "deepep_high_throughput"})
    assert "serving.prefill.all2all_backend='deepep_high_throughput' only applies with expert parallelism" in message


def test_an_all2all_backend_that_cannot_cross_efa_is_refused_with_the_reason() -> None:
    two_nodes = {"nodes_per_replica": 2, "data_parallel_local": 8, "data_parallel": 16, "expert_parallel": True}
    message = problems(decode={**two_nodes, "all2all_backend": "deepep_low_latency"})
    assert (
        "serving.decode.all2all_backend='deepep_low_latency' cannot be used with nodes_per_replica=2 on p5.48xlarge: "
        "DeepEP v1 needs NVSHMEM IBGDA (GPU-initiated InfiniBand/RoCE RDMA), which EFA lacks; across EFA nodes use "
        "allgather_reducescatter or deepep_v2"
    ) in message
    for backend in ("allgather_reducescatter", "deepep_v2"):
        assert serving(decode={**two_nodes, "all2all_backend": backend}).decode.all2all_backend == backend
    one_node = {"data_parallel_local": 8, "data_parallel": 8, "expert_parallel": True}
    assert serving(decode={**one_node, "all2all_backend": "deepep_low_latency"}).decode.all2all_backend


def test_removed_and_unknown_all2all_backends_are_refused() -> None:
    ep = {"expert_parallel": True}
    assert "serving.prefill.all2all_backend='pplx' cannot be used: removed from vLLM" in problems(
        prefill={**ep, "all2all_backend": "pplx"}
    )
    assert "serving.prefill.all2all_backend='deepep' cannot be used: the pinned vLLM has no such backend" in problems(
        prefill={**ep, "all2all_backend": "deepep"}
    )


def test_unknown_instance_type_lists_the_known_ones() -> None:
    message = problems(decode={"instance_type": "g5.xlarge"})
    assert "serving.decode.instance_type: unknown instance type 'g5.xlarge'; known types: p4d.24xlarge" in message


def test_hub_id_needs_hub_access() -> None:
    message = problems(model={"source": "meta-llama/Llama-3.1-8B", "served_name": "llama"})
    assert "is a Hugging Face id, but serving.model.hub_access=false" in message
    allowed = serving(model={"source": "meta-llama/Llama-3.1-8B", "served_name": "llama", "hub_access": True})
    assert allowed.model.source_kind == "hub"


@pytest.mark.parametrize("source", ["s3://", "relative/dir/x", "not a model"])
def test_malformed_sources_are_refused(source: str) -> None:
    message = problems(model={"source": source, "served_name": "x"})
    assert f"serving.model.source={source!r}" in message


def test_enumerated_fields_name_the_valid_values() -> None:
    message = problems(kv_transfer={"backend": "EFA"})
    assert "serving.kv_transfer.backend: Input should be 'auto', 'UCX' or 'LIBFABRIC' (got 'EFA')" in message


def test_unknown_keys_are_refused() -> None:
    message = problems(decode={"tensor_paralel": 2})
    assert "serving.decode.tensor_paralel: Extra inputs are not permitted" in message


def test_short_lease_is_refused() -> None:
    message = problems(kv_transfer={"lease_duration_s": 3})
    assert "serving.kv_transfer.lease_duration_s: Input should be greater than or equal to 6 (got 3)" in message


def test_load_serving_reads_a_whole_deployment_or_a_bare_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = {"model": {"source": "/models/tiny", "served_name": "tiny"}, "decode": {"tensor_parallel": 2}}
    whole = tmp_path / "deployment.yaml"
    whole.write_text(yaml.safe_dump({"name": "demo", "region": "us-east-1", "serving": section}))
    bare = tmp_path / "serving.yaml"
    bare.write_text(yaml.safe_dump(section))
    assert load_serving(whole) == load_serving(bare) == Serving.model_validate(section)
    monkeypatch.setenv(CONFIG_ENV, str(bare))
    assert load_serving().decode.tensor_parallel == 2


def test_load_serving_without_a_path_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"--config or set {CONFIG_ENV}"):
        load_serving()
