"""The workloads, each deterministic from its seed. Prompts are words of the bench vocabulary (one token per word,
see :mod:`bench.workloads.vocabulary`), so lengths below are tokens. Arrivals are a Poisson process at ``rate_rps``
(open loop: the load does not wait for the system, as users do not), or a Gamma process for ``bursty``. Only the
arrival times depend on ``rate_rps`` (the same draws, scaled): a rate sweep replays the same prompts faster.

- shared_prefix: the shape of llm-d's precise prefix-routing benchmark (150 groups x 6k-token system prefix, 5 users
  per group, 1.2k-token questions), scaled to this machine: ``groups`` long prefixes, ``users`` per group, each asking
  ``questions`` shorter questions, all interleaved at random.
- multi_turn: conversations whose every turn resends the whole history plus a new user message (chat endpoint).
- long_prompt: unique long prompts with short answers (prefill-heavy: what P/D disaggregation is for).
- decode_heavy: short prompts with long answers.
- bursty: shared_prefix's traffic with Gamma inter-arrival times of coefficient of variation ``cv`` (>= 3: bursts far
  above the mean rate). :func:`gamma_gap` is THE bursty arrival process: the admission benchmark and the autoscaling
  simulation draw theirs from it too.
- kv_pressure: shared prefixes whose working set overflows the whole cluster's KV cache (``groups`` x
  ``prefix_tokens`` against prefill engines x capacity, see bench/harness/scenario.py), their popularity Zipf-skewed:
  keeping every prefix resident is impossible, so the oracle's bound is out of reach and a router must trade the
  locality of the hot prefixes against load.
- agentic: sessions of an agent loop on the chat endpoint: a long system prompt with tool schemas, a task, then
  ``steps`` calls whose context grows by each short answer (a tool call) and its tool's result (hundreds of tokens);
  between two calls the tool runs (a pause drawn from ``tool_s``, seconds), so calls of a session arrive unevenly.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import VOCABULARY_SIZE

MODEL = "tiny"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 6
    rate_rps: float = Field(gt=0)


class SharedPrefix(_Spec):
    kind: Literal["shared_prefix"] = "shared_prefix"
    groups: int = 12
    prefix_tokens: int = 1536
    users: int = 5
    questions: int = 2
    question_tokens: int = 192
    output_tokens: int = 24


class MultiTurn(_Spec):
    kind: Literal["multi_turn"] = "multi_turn"
    conversations: int = 16
    turns: int = 5
    system_tokens: int = 256
    user_tokens: int = 96
    reply_tokens: int = 96
    output_tokens: int = 24
    think_s: float = 1.0


class LongPrompt(_Spec):
    kind: Literal["long_prompt"] = "long_prompt"
    requests: int = 60
    min_prompt_tokens: int = 1500
    max_prompt_tokens: int = 3000
    output_tokens: int = 8


class DecodeHeavy(_Spec):
    kind: Literal["decode_heavy"] = "decode_heavy"
    requests: int = 60
    min_prompt_tokens: int = 32
    max_prompt_tokens: int = 96
    output_tokens: int = 160


class Bursty(SharedPrefix):
    kind: Literal["bursty"] = "bursty"  # type: ignore[assignment]
    cv: float = Field(default=3.5, ge=3.0, description="coefficient of variation of the inter-arrival times")


class KvPressure(_Spec):
    kind: Literal["kv_pressure"] = "kv_pressure"
    groups: int = 48
    prefix_tokens: int = 1536
    requests: int = 96
    zipf_s: float = 1.0
    question_tokens: int = 128
    output_tokens: int = 24


class Agentic(_Spec):
    kind: Literal["agentic"] = "agentic"
    sessions: int = 10
    steps: int = 6
    system_tokens: int = 1024
    task_tokens: int = 128
    call_tokens: int = 32
    min_result_tokens: int = 64
    max_result_tokens: int = 384
    output_tokens: int = 32
    tool_s: tuple[float, float] = (0.2, 1.5)


WorkloadSpec = SharedPrefix | MultiTurn | LongPrompt | DecodeHeavy | Bursty | KvPressure | Agentic


def words(rng: random.Random, count: int) -> str:
    return " ".join(f"w{rng.randrange(VOCABULARY_SIZE)}" for _ in range(count))


def arrivals(rng: random.Random, count: int, rate: float) -> list[float]:
    now, times = 0.0, []
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


def gamma_gap(rng: random.Random, rate: float, cv: float) -> float:
    """One inter-arrival time of a Gamma process of mean ``1 / rate`` and coefficient of variation ``cv`` (shape
    1/cv^2: cv 1 is Poisson, cv 3 packs most arrivals into bursts separated by long lulls)."""
    shape = 1 / cv**2
    return rng.gammavariate(shape, 1 / (shape * rate))


def chat(at: float, messages: list[dict[str, str]], max_tokens: int) -> BenchRequest:
    body = {
        "model": MODEL,
        "messages": [dict(m) for m in messages],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return BenchRequest(at, "chat", body)


def completion(at: float, prompt: str, max_tokens: int) -> BenchRequest:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return BenchRequest(at, "completions", body)


def shared_prefix_prompts(rng: random.Random, spec: SharedPrefix) -> list[str]:
    """Every group's prefix followed by each of its users' questions, all interleaved at random."""
    prefixes = [words(rng, spec.prefix_tokens) for _ in range(spec.groups)]
    asks = [
        (g, words(rng, spec.question_tokens)) for g in range(spec.groups) for _ in range(spec.users * spec.questions)
    ]
    rng.shuffle(asks)
    return [f"{prefixes[g]} {q}" for g, q in asks]


def generate(spec: WorkloadSpec) -> list[BenchRequest]:
    rng = random.Random(spec.seed)
    if isinstance(spec, Bursty):
        now, out = 0.0, list[BenchRequest]()
        for prompt in shared_prefix_prompts(rng, spec):
            now += gamma_gap(rng, spec.rate_rps, spec.cv)
            out.append(completion(now, prompt, spec.output_tokens))
        return out
    if isinstance(spec, KvPressure):
        prefixes = [words(rng, spec.prefix_tokens) for _ in range(spec.groups)]
        weights = [1 / (rank + 1) ** spec.zipf_s for rank in range(spec.groups)]
        picks = rng.choices(range(spec.groups), weights=weights, k=spec.requests)
        asks = [(g, words(rng, spec.question_tokens)) for g in picks]
        times = arrivals(rng, len(asks), spec.rate_rps)
        return [
            completion(at, f"{prefixes[g]} {q}", spec.output_tokens) for at, (g, q) in zip(times, asks, strict=True)
        ]
    if isinstance(spec, Agentic):
        starts = arrivals(rng, spec.sessions, spec.rate_rps / spec.steps)
        out = []
        for start in starts:
            messages = [
                {"role": "system", "content": words(rng, spec.system_tokens)},
                {"role": "user", "content": words(rng, spec.task_tokens)},
            ]
            at = start
            for _ in range(spec.steps):
                out.append(chat(at, messages, spec.output_tokens))
                messages = [
                    *messages,
                    {"role": "assistant", "content": words(rng, spec.call_tokens)},
                    {
                        "role": "user",
                        "content": words(rng, rng.randint(spec.min_result_tokens, spec.max_result_tokens)),
                    },
                ]
                at += rng.uniform(*spec.tool_s)
        return sorted(out, key=lambda r: r.at_s)
    if isinstance(spec, SharedPrefix):
        prompts = shared_prefix_prompts(rng, spec)
        times = arrivals(rng, len(prompts), spec.rate_rps)
        return [completion(at, prompt, spec.output_tokens) for at, prompt in zip(times, prompts, strict=True)]
    if isinstance(spec, MultiTurn):
        starts = arrivals(rng, spec.conversations, spec.rate_rps / spec.turns)
        out = []
        for start in starts:
            messages = [{"role": "system", "content": words(rng, spec.system_tokens)}]
            for turn in range(spec.turns):
                messages.append({"role": "user", "content": words(rng, spec.user_tokens)})
                out.append(chat(start + turn * spec.think_s, messages, spec.output_tokens))
                messages.append({"role": "assistant", "content": words(rng, spec.reply_tokens)})
        return sorted(out, key=lambda r: r.at_s)
    if isinstance(spec, LongPrompt):
        times = arrivals(rng, spec.requests, spec.rate_rps)
        return [
            completion(at, words(rng, rng.randint(spec.min_prompt_tokens, spec.max_prompt_tokens)), spec.output_tokens)
            for at in times
        ]
    times = arrivals(rng, spec.requests, spec.rate_rps)
    return [
        completion(at, words(rng, rng.randint(spec.min_prompt_tokens, spec.max_prompt_tokens)), spec.output_tokens)
        for at in times
    ]
