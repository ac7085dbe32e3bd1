"""The four workloads, each deterministic from its seed. Prompts are words of the bench vocabulary (one token per
word, see :mod:`bench.workloads.vocabulary`), so lengths below are tokens. Arrivals are a Poisson process at
``rate_rps`` (open loop: the load does not wait for the system, as users do not).

- shared_prefix: the shape of llm-d's precise prefix-routing benchmark (150 groups x 6k-token system prefix, 5 users
  per group, 1.2k-token questions), scaled to this machine: ``groups`` long prefixes, ``users`` per group, each asking
  ``questions`` shorter questions, all interleaved at random.
- multi_turn: conversations whose every turn resends the whole history plus a new user message (chat endpoint).
- long_prompt: unique long prompts with short answers (prefill-heavy: what P/D disaggregation is for).
- decode_heavy: short prompts with long answers.
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


WorkloadSpec = SharedPrefix | MultiTurn | LongPrompt | DecodeHeavy


def words(rng: random.Random, count: int) -> str:
    return " ".join(f"w{rng.randrange(VOCABULARY_SIZE)}" for _ in range(count))


def arrivals(rng: random.Random, count: int, rate: float) -> list[float]:
    now, times = 0.0, []
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


def completion(at: float, prompt: str, max_tokens: int) -> BenchRequest:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    return BenchRequest(at, "completions", body)


def generate(spec: WorkloadSpec) -> list[BenchRequest]:
    rng = random.Random(spec.seed)
    if isinstance(spec, SharedPrefix):
        prefixes = [words(rng, spec.prefix_tokens) for _ in range(spec.groups)]
        asks = [(g, words(rng, spec.question_tokens)) for g in range(spec.groups)
                for _ in range(spec.users * spec.questions)]
        rng.shuffle(asks)
        times = arrivals(rng, len(asks), spec.rate_rps)
        return [completion(at, f"{prefixes[g]} {q}", spec.output_tokens) for at, (g, q) in zip(times, asks)]
    if isinstance(spec, MultiTurn):
        starts = arrivals(rng, spec.conversations, spec.rate_rps / spec.turns)
        out: list[BenchRequest] = []
        for start in starts:
            messages = [{"role": "system", "content": words(rng, spec.system_tokens)}]
            for turn in range(spec.turns):
                messages.append({"role": "user", "content": words(rng, spec.user_tokens)})
                body = {"model": MODEL, "messages": [dict(m) for m in messages], "max_tokens": spec.output_tokens,
                        "stream": True, "stream_options": {"include_usage": True}}
                out.append(BenchRequest(start + turn * spec.think_s, "chat", body))
                messages.append({"role": "assistant", "content": words(rng, spec.reply_tokens)})
        return sorted(out, key=lambda r: r.at_s)
    if isinstance(spec, LongPrompt):
        times = arrivals(rng, spec.requests, spec.rate_rps)
        return [completion(at, words(rng, rng.randint(spec.min_prompt_tokens, spec.max_prompt_tokens)),
                           spec.output_tokens) for at in times]
    times = arrivals(rng, spec.requests, spec.rate_rps)
    return [completion(at, words(rng, rng.randint(spec.min_prompt_tokens, spec.max_prompt_tokens)),
                       spec.output_tokens) for at in times]
