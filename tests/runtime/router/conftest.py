"""Fixtures of the router's unit-test harness (tests/support/router_cluster.py): a trained tokenizer, and clusters of
fault engines and a router in one background event loop, stopped when the test ends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.fault_engine import FaultEngine
from tests.support.router_cluster import CHAT_TEMPLATE, Cluster, LoopThread, serving_for, start_router


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer with a chat template, trained here in a blink (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [Path(__file__).read_text(), Path(json.__file__).read_text()]
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE})
    )
    return out


@pytest.fixture
def make_cluster(tokenizer_dir: Path) -> Iterator[Callable[..., Cluster]]:
    loop = LoopThread()
    started: list[Cluster] = []

    def make(prefills: int = 1, decodes: int = 1, tokenizer: bool = True, **router: Any) -> Cluster:
        prefill_engines = [FaultEngine(f"prefill-{i}") for i in range(prefills)]
        decode_engines = [FaultEngine(f"decode-{i}") for i in range(decodes)]
        for engine in prefill_engines + decode_engines:
            loop.run(engine.start())
        pairs = [(e, "prefill") for e in prefill_engines] + [(e, "decode") for e in decode_engines]
        source = tokenizer_dir if tokenizer else tokenizer_dir.parent / "no-tokenizer-here"
        serving = serving_for(pairs, source, **router)
        server = loop.run(start_router(serving))
        cluster = Cluster(loop, server, prefill_engines, decode_engines)
        started.append(cluster)
        cluster.wait_for(lambda: cluster.get("/ready")[0] == 200)
        return cluster

    def make_from(
        engines: list[FaultEngine], router: dict[str, Any], roles: dict[str, Any] | None = None, ready: bool = True
    ) -> Cluster:
        """Engines whose names start with their role, a router configured with ``router`` (its discovery too)
        and the serving roles' ``roles`` section (ports)."""
        for engine in engines:
            loop.run(engine.start(engine.port))
        pairs = [(engine, "prefill" if engine.name.startswith("prefill") else "decode") for engine in engines]
        server = loop.run(start_router(serving_for(pairs, tokenizer_dir, roles, **router)))
        cluster = Cluster(
            loop, server, [e for e, role in pairs if role == "prefill"], [e for e, role in pairs if role == "decode"]
        )
        started.append(cluster)
        if ready:
            cluster.wait_for(lambda: cluster.get("/ready")[0] == 200)
        return cluster

    make.make_from = make_from  # type: ignore[attr-defined]
    yield make
    for cluster in started:
        loop.run(cluster.router.stop())
        for engine in cluster.prefills + cluster.decodes:
            loop.run(engine.stop())
    loop.close()


@pytest.fixture
def make_cluster_from(make_cluster: Callable[..., Cluster]) -> Callable[..., Cluster]:
    """``make_cluster_from(engines, router, roles)``: a cluster of engines made by the test (hosts, ports)."""
    return make_cluster.make_from  # type: ignore[attr-defined]
