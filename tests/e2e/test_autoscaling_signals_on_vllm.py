"""The scaling signals on the real CPU test bed, evaluated by a real Prometheus with the exact queries the KEDA
ScaledObjects carry (infra/workloads/autoscaling_objects.py): a prompt-heavy burst raises the prefill backlog, a
decode-heavy burst raises the decode signals, and the replica counts the HPA computes from the ScaledObjects' targets
move the right way (prefill up on the first burst, decode up on the second, each back at rest when its burst is over).

The decode engine gets a small KV cache (64 blocks of 32 tokens) so a few dozen long generations fill it, as a
loaded GPU's would; the prefill throughput per replica is set for the tiny CPU model so that the backlog reads
seconds. What each signal did is printed (pytest -s) for the record."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from infra.config import Deployment, parse_deployment
from infra.observability.targets import ENGINE_JOB, ROUTER_JOB, target_labels
from infra.workloads.autoscaling_objects import ScalingTrigger, desired_replicas, scaling_triggers
from testbed.cpu_pair import REPO, WORK, cpu_pair_serving, server_environment
from testbed.ports import free_ports
from testbed.prometheus_server import PrometheusServer, ScrapeTarget
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer
from tests.support.synthesis import load_yaml

pytestmark = pytest.mark.e2e

NAMESPACE = "pdstack"
PREFILL_TOKENS_PER_S = 2000.0  # the tiny model on one CPU core, roughly: the backlog then reads whole seconds
DECODE_BLOCKS = 64


@dataclass(frozen=True)
class Bed:
    router: RouterProcess
    prometheus: PrometheusServer
    deployment: Deployment

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.router.url}/v1", api_key="none", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def bed(
    vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, cores_to_itself: None
) -> Iterator[Bed]:
    """A pair of its own (a small decode KV cache, the scaling signals' router settings): never beside the
    session's pair."""
    ports = free_ports(9)
    serving = cpu_pair_serving(tiny_model, ports)
    decode = serving["decode"]
    decode["extra_args"] = [*decode["extra_args"], "--num-gpu-blocks-override", str(DECODE_BLOCKS)]  # type: ignore[index]
    serving.update(
        {
            "router": {
                "host": "127.0.0.1",
                "port": ports[8],
                "metrics_port": None,
                "pd_threshold_tokens": 0,
                "health_interval_s": 1.0,
                "metrics_interval_s": 1.0,
                "timeouts": {"connect_s": 2.0, "first_byte_s": 300.0, "idle_stream_s": 120.0},
                "signals": {"prefill_tokens_per_s": PREFILL_TOKENS_PER_S},
                "discovery": {
                    "static": [
                        {"url": f"http://127.0.0.1:{ports[0]}", "role": "prefill"},
                        {"url": f"http://127.0.0.1:{ports[4]}", "role": "decode"},
                    ]
                },
            },
        }
    )
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "autoscaling-deployment.yaml"
    config.write_text(yaml.safe_dump({"name": "cpu-autoscaling", "serving": serving}))
    env = server_environment(vllm_python)
    # the scaling queries of the default deployment (namespace pdstack, the default SLO and targets)
    deployment = parse_deployment(load_yaml("default.yaml"))
    assert deployment.workloads.namespace == NAMESPACE
    targets = [
        ScrapeTarget(ROUTER_JOB, f"127.0.0.1:{ports[8]}", target_labels(NAMESPACE, "router-0", "tiny")),
        ScrapeTarget(ENGINE_JOB, f"127.0.0.1:{ports[0]}", target_labels(NAMESPACE, "prefill-0", "tiny", "prefill")),
        ScrapeTarget(ENGINE_JOB, f"127.0.0.1:{ports[4]}", target_labels(NAMESPACE, "decode-0", "tiny", "decode")),
    ]
    with ExitStack() as stack:
        stack.enter_context(RuntimeServer("prefill", vllm_python, config, ports[0], env, WORK / "as-prefill.log", REPO))
        stack.enter_context(RuntimeServer("decode", vllm_python, config, ports[4], env, WORK / "as-decode.log", REPO))
        router = stack.enter_context(
            RouterProcess(Path(sys.executable), config, ports[8], WORK / "as-router.log", REPO)
        )
        prometheus = stack.enter_context(
            PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets, scrape_interval_s=1.0)
        )
        for job in (ROUTER_JOB, ENGINE_JOB):
            prometheus.wait_for_samples(f'up{{job="{job}"}} == 1')
        yield Bed(router=router, prometheus=prometheus, deployment=deployment)


def unique_prompt(i: int, words: int) -> str:
    return " ".join(f"w{i}x{j}" for j in range(words))


def burst(bed: Bed, count: int, prompt_words: int, max_tokens: int, rounds: int = 1) -> tuple[float, float]:
    """``count`` requests at once, ``rounds`` times back to back; returns the (start, end) wall-clock window."""
    client = bed.client()
    start = time.time()
    with ThreadPoolExecutor(count) as pool:
        for round_ in range(rounds):
            answers = [
                pool.submit(
                    client.completions.create,
                    model="tiny",
                    prompt=unique_prompt(i + count * round_ + int(start), prompt_words),
                    max_tokens=max_tokens,
                    temperature=0.0,
                    extra_body={"ignore_eos": True},
                )
                for i in range(count)
            ]
            for answer in answers:
                answer.result()
    time.sleep(1.5)  # let the last scrape of the burst land
    return start, time.time()


def series(bed: Bed, trigger: ScalingTrigger, window: tuple[float, float]) -> list[float]:
    result = bed.prometheus.query_range(trigger.query, window[0], window[1], 0.5)
    return [float(value) for _, value in result[0]["values"]] if result else []


def peak_and_mean(values: list[float]) -> tuple[float, float]:
    return (max(values), sum(values) / len(values)) if values else (0.0, 0.0)


def test_each_roles_signal_rises_on_its_own_burst(bed: Bed) -> None:
    (backlog,) = scaling_triggers(bed.deployment, "prefill")
    kv_usage, waiting = scaling_triggers(bed.deployment, "decode")
    rest = (time.time() - 5, time.time())
    time.sleep(0.1)
    # The prompt burst runs three rounds of 8 long prompts, several seconds, so that Prometheus samples it whatever
    # scrapes the loaded CPU pair misses (a single round of 8 was over in about 2 s, and twice no sample landed in
    # it). The decode burst's prompts are short (~26 tokens, the tiny model's tokenizer), so that its 24 concurrent
    # prefill legs add little prefill work.
    prompt_window = burst(bed, count=8, prompt_words=70, max_tokens=1, rounds=3)  # ~960-token prompts, 1 token each
    decode_window = burst(bed, count=24, prompt_words=2, max_tokens=300)  # ~26-token prompts, long answers

    observed = {}
    for name, trigger in (("prefill_backlog", backlog), ("decode_kv_usage", kv_usage), ("decode_waiting", waiting)):
        observed[name] = {
            phase: peak_and_mean(series(bed, trigger, window))
            for phase, window in (("rest", rest), ("prompt_burst", prompt_window), ("decode_burst", decode_window))
        }
    print("\nsignal: phase -> (peak, mean)")
    for name, phases in observed.items():
        print(f"  {name}: " + ", ".join(f"{p} ({peak:.3f}, {mean:.3f})" for p, (peak, mean) in phases.items()))

    prefill = observed["prefill_backlog"]
    assert prefill["prompt_burst"][0] > 0 and prefill["rest"][0] == 0
    decode = observed["decode_kv_usage"]
    # In P/D the prompt burst's KV lands in decode too (decode pulls each prompt's blocks before its one token): 8
    # prompts of ~960 tokens fill the 64 blocks as well, so which burst's sampled KV usage is higher depends on where
    # the scrapes land (a fresh CI run saw means 0.28 against 0.22, and failed the old "twice the prompt burst's").
    # What must hold: the decode burst lifts decode's KV usage above rest (and, below, asks for more decode replicas).
    assert decode["decode_burst"][0] > decode["rest"][0]

    bounds = {"prefill": (0, 8), "decode": (1, 8)}
    prefill_replicas = {
        phase: desired_replicas(
            peak, backlog.target, current=1, minimum=bounds["prefill"][0], maximum=bounds["prefill"][1]
        )
        for phase, (peak, _) in prefill.items()
    }
    decode_replicas = {
        phase: max(
            desired_replicas(
                observed[name][phase][0],
                trigger.target,
                current=1,
                minimum=bounds["decode"][0],
                maximum=bounds["decode"][1],
            )
            for name, trigger in (("decode_kv_usage", kv_usage), ("decode_waiting", waiting))
        )
        for phase in ("rest", "prompt_burst", "decode_burst")
    }
    print(f"  HPA replicas from the peaks: prefill {prefill_replicas}, decode {decode_replicas}")
    assert prefill_replicas["rest"] == 0 and prefill_replicas["prompt_burst"] >= 1
    # The decode burst's prefill legs are real prefill work too, so its backlog may rise, and where a scrape lands
    # decides which burst's sampled peak is higher (a fresh CI run saw 0.48 s against 0.78 s with 8-word decode
    # prompts). What must hold is the decision: the decode burst never asks for more prefill than the prompt burst.
    assert prefill_replicas["decode_burst"] <= prefill_replicas["prompt_burst"]
    assert decode_replicas["rest"] == 1 and decode_replicas["decode_burst"] > 1
    # after the bursts every signal is back at rest: the windows would bring both roles back down
    time.sleep(2)
    assert float(bed.prometheus.query(backlog.query)[0]["value"][1]) == 0
