"""A simulated day of bursty traffic on a prefill/decode fleet: KEDA + HPA autoscaling (the ScaledObjects pdstack
renders) against static provisioning at the peak and at the mean. Reports SLO attainment (TTFT) and GPU-hours.

    .venv/bin/python -m bench.autoscaling_sim [--hours 24] [--seed 1] [--out bench/results/<date>-autoscaling-sim]

The model (a fluid simulation in 0.25 s steps; every constant below, with what it stands for):
- Arrivals: Gamma inter-arrival times of coefficient of variation 3 (the bursty workload's arrival process,
  bench.workloads.generators.gamma_gap), their mean rate switching between a busy and a quiet level every 20-60
  minutes (agentic traffic: bursts within bursts). Prompts lognormal around 4,000 tokens (uncached), answers around
  400 tokens.
- Prefill: replicas share one FIFO backlog, each computing PREFILL_TPS uncached tokens per second; with no prefill
  replica the decode replicas prefill the prompts themselves at half that rate each (the router's decode-only path).
- Decode: each replica holds KV_TOKENS tokens of KV; a prefilled request waits until its prompt + answer fit, then
  emits a token every ITL_S. TTFT = queueing + prefill + KV wait + one ITL.
- Autoscaling: the signals pdstack exports (prefill backlog seconds; decode KV usage and waiting requests), read
  every POLL_S (KEDA's pollingInterval); the HPA's AverageValue formula with its 10% tolerance, scale-up at most 2
  replicas a minute, scale-down after a stabilization window of MODEL_LOAD_S at most 1 replica per 5 minutes, prefill
  to zero after the cooldown. A new replica costs GPU time at once and serves after MODEL_LOAD_S (node + model load).
- Static: the fewest replicas that carry the busiest 5 minutes of the trace at the targets ("peak"), as many as the
  autoscaled run peaked at, and the fewest that carry the trace's mean load ("mean").
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bench.workloads.generators import gamma_gap
from infra.config import Deployment, load_deployment
from infra.workloads.autoscaling_objects import desired_replicas, scaling_triggers

REPO = Path(__file__).resolve().parents[1]

STEP_S = 0.25
PREFILL_TPS = 20_000.0  # the router's default prefill_tokens_per_s (8B model, TP1, one H100)
KV_TOKENS = 400_000  # KV tokens one decode replica holds (8B bf16 on an 80 GB H100, ~50 GB of KV)
ITL_S = 0.025  # a decode step at moderate batch
GPUS_PER_REPLICA = 1
POLL_S = 15.0
MODEL_LOAD_S = 600.0  # node ready + model from NVMe + engine warm-up; the windows are sized to it
SCALE_UP = (2, 60.0)  # HPA policy: at most 2 replicas per 60 s
SCALE_DOWN = (1, 300.0)  # at most 1 replica per 300 s
MAX_REPLICAS = 16


@dataclass
class Request:
    arrival: float
    prompt: int
    output: int
    left: float = 0.0  # prompt tokens still to prefill
    prefilled: float | None = None
    first_token: float | None = None
    finish: float | None = None


def trace(hours: float, seed: int, mean_rps: float = 8.0, cv: float = 3.0) -> list[Request]:
    rng = random.Random(seed)
    t, end, requests = 0.0, hours * 3600, []
    level_end, level = rng.uniform(1200, 3600), 0.2  # the day starts quiet, on the replicas a quiet hour needs
    while t < end:
        if t >= level_end:
            level = rng.choice((1.8, 0.2))  # busy or quiet, mean 1.0
            level_end = t + rng.uniform(1200, 3600)
        rate = mean_rps * level
        t += gamma_gap(rng, rate, cv)
        prompt = int(min(60_000, rng.lognormvariate(math.log(4000), 0.6)))
        output = int(min(4000, rng.lognormvariate(math.log(400), 0.5)))
        requests.append(Request(t, prompt, output, left=prompt))
    return requests


@dataclass
class Role:
    name: str
    minimum: int
    maximum: int
    replicas: int  # desired (GPU-billed) replicas
    ready_at: list[float] = field(default_factory=list)  # per billed replica: when it serves
    history: deque = field(default_factory=deque)  # (time, recommendation) for the stabilization window
    last_up: float = -1e9
    last_down: float = -1e9
    peak: int = 0

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def resize(self, target: int, now: float) -> None:
        while len(self.ready_at) < target:
            self.ready_at.append(now + MODEL_LOAD_S)
        while len(self.ready_at) > target:
            self.ready_at.remove(max(self.ready_at))  # remove a still-loading replica first
        self.replicas = target
        self.peak = max(self.peak, target)


def hpa_step(role: Role, recommendation: int, now: float, window_s: float) -> None:
    """The HPA's behaviour: scale-up at once (bounded by its policy), scale-down to the highest recommendation of
    the stabilization window (bounded by its policy)."""
    role.history.append((now, recommendation))
    while role.history and role.history[0][0] < now - window_s:
        role.history.popleft()
    current = role.replicas
    if recommendation > current:
        step, period = SCALE_UP
        if now - role.last_up >= period or current == 0:
            role.resize(min(recommendation, current + step), now)
            role.last_up = now
        return
    stabilized = max(r for _, r in role.history)
    if stabilized < current and now - role.last_down >= SCALE_DOWN[1]:
        role.resize(max(stabilized, current - SCALE_DOWN[0]), now)
        role.last_down = now


def default_deployment() -> Deployment:
    """The targets and SLO come from the default deployment file, through the same code the ScaledObjects use."""
    return load_deployment(REPO / "deployments" / "default.yaml")


def simulate(requests: list[Request], prefill: Role, decode: Role, autoscale: bool) -> dict[str, float]:
    deployment = default_deployment()
    (backlog_trigger,) = scaling_triggers(deployment, "prefill")
    kv_trigger, waiting_trigger = scaling_triggers(deployment, "decode")
    slo = deployment.slo.ttft_seconds
    for role in (prefill, decode):
        role.resize(role.replicas, -MODEL_LOAD_S)  # the starting replicas are loaded
    pending = deque(requests)
    queue: deque[Request] = deque()  # waiting for prefill
    kv_wait: deque[Request] = deque()  # prefilled, waiting for decode KV
    decoding: list[tuple[float, int, Request]] = []  # heap by finish time
    kv_used = 0
    gpu_s = 0.0
    now, next_poll, end = 0.0, 0.0, requests[-1].arrival + 600
    idle_since = 0.0
    done: list[Request] = []
    while now < end:
        while pending and pending[0].arrival <= now:
            queue.append(pending.popleft())
        ready_p, ready_d = prefill.ready(now), decode.ready(now)
        budget = (ready_p * PREFILL_TPS + (0 if ready_p else ready_d * PREFILL_TPS / 2)) * STEP_S
        while queue and budget > 0:
            head = queue[0]
            used = min(head.left, budget)
            head.left -= used
            budget -= used
            if head.left <= 0:
                head.prefilled = now
                kv_wait.append(queue.popleft())
        capacity = ready_d * KV_TOKENS
        while kv_wait and kv_used + kv_wait[0].prompt + kv_wait[0].output <= capacity:
            request = kv_wait.popleft()
            kv_used += request.prompt + request.output
            request.first_token = now + ITL_S
            heapq.heappush(decoding, (request.first_token + request.output * ITL_S, id(request), request))
        while decoding and decoding[0][0] <= now:
            _, _, request = heapq.heappop(decoding)
            request.finish = now
            kv_used -= request.prompt + request.output
            done.append(request)
        gpu_s += (prefill.replicas + decode.replicas) * GPUS_PER_REPLICA * STEP_S
        if autoscale and now >= next_poll:
            next_poll = now + POLL_S
            backlog_s = sum(r.left for r in queue) / PREFILL_TPS
            kv_sum = kv_used / KV_TOKENS
            want_p = desired_replicas(backlog_s, backlog_trigger.target, max(prefill.replicas, 1), 0, prefill.maximum)
            if backlog_s > backlog_trigger.activation:
                idle_since = now
                want_p = max(want_p, 1)
            elif prefill.replicas <= 1 and now - idle_since < MODEL_LOAD_S:
                want_p = max(want_p, min(1, prefill.replicas))  # cooldown before zero
            want_d = max(
                desired_replicas(kv_sum, kv_trigger.target, max(decode.replicas, 1), 1, decode.maximum),
                desired_replicas(len(kv_wait), waiting_trigger.target, max(decode.replicas, 1), 1, decode.maximum),
            )
            hpa_step(prefill, max(prefill.minimum, want_p), now, MODEL_LOAD_S)
            hpa_step(decode, max(decode.minimum, want_d), now, MODEL_LOAD_S)
        now += STEP_S
    ttfts = sorted((r.first_token or end) - r.arrival for r in requests)
    met = sum(1 for t in ttfts if t <= slo)
    return {
        "requests": len(requests),
        "served": len(done),
        "slo_attainment": met / len(requests),
        "ttft_p50_s": ttfts[len(ttfts) // 2],
        "ttft_p99_s": ttfts[int(len(ttfts) * 0.99)],
        "gpu_hours": gpu_s / 3600,
        "prefill_peak": prefill.peak,
        "decode_peak": decode.peak,
    }


def peak_replicas(requests: list[Request], kv_target: float, window_s: float = 300.0) -> tuple[int, int]:
    """The fewest prefill and decode replicas that carry the busiest 5 minutes of the trace at the targets."""
    windows: dict[int, list[float]] = {}
    for r in requests:
        slot = windows.setdefault(int(r.arrival // window_s), [0.0, 0.0])
        slot[0] += r.prompt
        slot[1] += (r.prompt + r.output) * r.output * ITL_S
    prompt_tps = max(w[0] for w in windows.values()) / window_s
    kv = max(w[1] for w in windows.values()) / window_s / KV_TOKENS
    return max(1, math.ceil(prompt_tps / PREFILL_TPS)), max(1, math.ceil(kv / kv_target))


def fresh(requests: list[Request]) -> list[Request]:
    return [Request(r.arrival, r.prompt, r.output, left=r.prompt) for r in requests]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/autoscaling-sim"))
    args = parser.parse_args()
    requests = trace(args.hours, args.seed)
    gaps = [b.arrival - a.arrival for a, b in itertools.pairwise(requests)]
    mean_gap = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean_gap) ** 2 for g in gaps) / len(gaps)) / mean_gap
    duration = requests[-1].arrival
    prompt_tps = sum(r.prompt for r in requests) / duration
    kv_mean = sum((r.prompt + r.output) * r.output * ITL_S for r in requests) / duration / KV_TOKENS
    deployment = default_deployment()
    (backlog_trigger,) = scaling_triggers(deployment, "prefill")
    kv_trigger, _ = scaling_triggers(deployment, "decode")

    rows: dict[str, dict[str, float]] = {}
    rows["autoscaled"] = simulate(
        fresh(requests), Role("prefill", 0, MAX_REPLICAS, 1), Role("decode", 1, MAX_REPLICAS, 1), autoscale=True
    )
    peak_p, peak_d = peak_replicas(requests, kv_trigger.target)
    rows["static_peak"] = simulate(
        fresh(requests),
        Role("prefill", peak_p, peak_p, peak_p),
        Role("decode", peak_d, peak_d, peak_d),
        autoscale=False,
    )
    top_p, top_d = int(rows["autoscaled"]["prefill_peak"]), int(rows["autoscaled"]["decode_peak"])
    rows["static_at_autoscaled_peak"] = simulate(
        fresh(requests), Role("prefill", top_p, top_p, top_p), Role("decode", top_d, top_d, top_d), autoscale=False
    )
    mean_p = max(1, math.ceil(prompt_tps / PREFILL_TPS))
    mean_d = max(1, math.ceil(kv_mean / kv_trigger.target))
    rows["static_mean"] = simulate(
        fresh(requests),
        Role("prefill", mean_p, mean_p, mean_p),
        Role("decode", mean_d, mean_d, mean_d),
        autoscale=False,
    )
    record = {
        "trace": {
            "hours": args.hours,
            "seed": args.seed,
            "requests": len(requests),
            "interarrival_cv": round(cv, 2),
            "mean_prompt_tokens_per_s": round(prompt_tps),
            "mean_rps": round(len(requests) / duration, 2),
        },
        "model": {
            "prefill_tps": PREFILL_TPS,
            "kv_tokens": KV_TOKENS,
            "itl_s": ITL_S,
            "poll_s": POLL_S,
            "model_load_s": MODEL_LOAD_S,
            "ttft_slo_s": deployment.slo.ttft_seconds,
            "prefill_target_s": backlog_trigger.target,
            "decode_kv_target": kv_trigger.target,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [
        (
            f"# Simulated autoscaling ({args.hours:g} h, seed {args.seed}, {len(requests)} requests, "
            f"inter-arrival CV {cv:.2f})"
        ),
        "",
        "| provisioning | prefill / decode replicas (peak) | TTFT SLO attainment | TTFT p50 / p99 s | GPU-hours |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {int(row['prefill_peak'])} / {int(row['decode_peak'])} | "
            f"{row['slo_attainment']:.3f} | {row['ttft_p50_s']:.2f} / {row['ttft_p99_s']:.2f} | "
            f"{row['gpu_hours']:.1f} |"
        )
    lines += ["", "Model: " + json.dumps(record["model"]), ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
