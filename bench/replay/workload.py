"""A trace window as a workload: the requests to send (arrival times scaled), what the trace itself bounds (every
distinct block computed once: the engines' best possible prefix hit rate), its rate and its bursts, and each
request's idle-engine time to first token (what no router can beat: the floor of "where time went")."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bench.fake_engine.timing import EngineTiming
from bench.replay.prompts import Prompts
from bench.replay.trace import TraceIndex, TraceRequest
from bench.workloads.request import BenchRequest

BURST_WINDOW_S = 10.0


def prefix_keys(hash_ids: Iterable[int]) -> list[int]:
    """Per block, a running hash of the ids up to and including it (Python's tuple hash of ints: deterministic, 64
    bits, so a collision among a trace's distinct prefixes is negligible)."""
    keys: list[int] = []
    key = 0
    for hash_id in hash_ids:
        key = hash((key, hash_id))
        keys.append(key)
    return keys


class PrefixBound:
    """The trace's own bound on prefix reuse, request by request in arrival order: a block is computed the first
    time it is seen after its prefix and hit by every later request that reaches it through equal leading ids, with
    unlimited KV and perfect placement. A block is keyed by its whole prefix (a running hash of the ids up to it),
    as engines chain block hashes: an id seen before only after other ids is computed again. At engine granularity:
    only full engine blocks are cached, and vLLM computes at least a prompt's last token."""

    def __init__(self, trace_block_size: int, engine_block_size: int) -> None:
        self.trace_block_size = trace_block_size
        self.engine_block_size = engine_block_size
        self._stored: dict[int, int] = {}  # prefix key -> tokens of its last block some earlier request computed
        self.prompt_tokens = 0
        self.hit_tokens = 0

    def hit(self, request: TraceRequest) -> int:
        """The tokens of ``request`` the bound lets a cache serve (then counts the request's blocks as computed)."""
        size = self.trace_block_size
        keys = prefix_keys(request.hash_ids)
        hit = 0
        for index, key in enumerate(keys):
            length = min(size, request.input_length - index * size)
            if self._stored.get(key, 0) < length:
                hit += self._stored.get(key, 0)
                break
            hit += length
        cap = (
            (request.input_length - 1) // self.engine_block_size * self.engine_block_size if request.input_length else 0
        )
        hit = min(hit // self.engine_block_size * self.engine_block_size, cap)
        for index, key in enumerate(keys):
            length = min(size, request.input_length - index * size)
            if self._stored.get(key, 0) < length:
                self._stored[key] = length
        self.prompt_tokens += request.input_length
        self.hit_tokens += hit
        return hit

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def idle_ttft_ms(timing: EngineTiming, input_length: int, hit_tokens: int) -> float:
    """Modelled ms to the first token on idle engines with the bound's cache hits: the prefill step of the uncached
    tokens, the decode engine's pull of the whole prompt, its first step."""
    uncached = input_length - hit_tokens
    prefill = timing.step_ms(uncached, 0, timing.attention_pairs(hit_tokens, uncached))
    return prefill + timing.transfer_ms(input_length) + timing.step_ms(0, input_length)


@dataclass
class TraceWorkload:
    """The window's kept requests as columns: their hash ids, not their prompts (a prompt is built when it is sent,
    ``bench_requests``; the planner derives its blocks per request, bench/plan/__main__.py)."""

    hash_ids: list[tuple[int, ...]]
    arrivals_s: list[float]
    """Per request, trace seconds after the first (divided by the speedup), before ``time_scale``."""
    input_lengths: list[int]
    output_lengths: list[int]
    """At least one (vLLM requires it)."""
    idle_ttft_ms: list[float]
    """Per request, modelled ms."""
    span_s: float
    """Trace seconds from the first to the last arrival kept."""
    bound_hit_rate: float
    prompt_tokens: int
    prompts: Prompts
    """The trace's blocks as tokens (one numbering of hash ids for the whole replay)."""
    time_scale: float = 1.0
    """Wall ms per modelled ms of the engines the requests go to."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Requests of the window not sent, by reason."""
    peak_rate_rps: float = 0.0
    """The busiest BURST_WINDOW_S's arrivals per trace second."""

    def __len__(self) -> int:
        return len(self.arrivals_s)

    @property
    def rate_rps(self) -> float:
        return len(self.arrivals_s) / self.span_s if self.span_s > 0 else float(len(self.arrivals_s))

    def trace_request(self, position: int) -> TraceRequest:
        return TraceRequest(
            0, 0.0, self.input_lengths[position], self.output_lengths[position], self.hash_ids[position]
        )

    def bench_requests(self) -> Iterator[BenchRequest]:
        """In arrival order, ``at_s`` in wall seconds, each prompt built only when the iterator reaches it."""
        for position, arrival in enumerate(self.arrivals_s):
            yield self.prompts.bench_request(self.trace_request(position), arrival * self.time_scale)


def peak_rate(times_s: Iterable[float], window_s: float = BURST_WINDOW_S) -> float:
    """Most arrivals in any ``window_s`` (sorted ``times_s``), per second; a trace shorter than ``window_s`` is one
    window of its own span (as ``TraceWorkload.rate_rps`` counts it), so its peak is never below its mean rate."""
    ordered = list(times_s)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    seconds = min(window_s, ordered[-1] - ordered[0]) if ordered else 0.0
    return best / seconds if seconds > 0 else float(best)


def build(
    index: TraceIndex,
    timing: EngineTiming,
    engine_block_size: int,
    max_context: int | None = None,
    speedup: float = 1.0,
) -> TraceWorkload:
    """The window's requests, arrival gaps kept and stretched by ``timing.time_scale`` (the engines' wall ms per
    modelled ms, so the trace's load on the modelled hardware stays the trace's) and compressed by ``speedup``.
    Requests whose prompt + output exceed ``max_context`` are skipped (a real engine answers them 400); so are
    empty prompts (vLLM refuses them). No prompt is built here: ``TraceWorkload.bench_requests`` builds each when
    it is sent, so a window's memory is its hash ids, not its text."""
    bound = PrefixBound(index.block_size, engine_block_size)
    ids: list[tuple[int, ...]] = []
    inputs: list[int] = []
    outputs: list[int] = []
    idle: list[float] = []
    times: list[float] = []
    skipped: dict[str, int] = {}
    first: float | None = None
    for request in index:
        if request.input_length == 0:
            skipped["empty prompt"] = skipped.get("empty prompt", 0) + 1
            continue
        if max_context is not None and request.input_length + max(1, request.output_length) > max_context:
            skipped["longer than the model's context"] = skipped.get("longer than the model's context", 0) + 1
            continue
        hit = bound.hit(request)
        first = request.timestamp_ms if first is None else first
        trace_s = (request.timestamp_ms - first) / 1000.0
        times.append(trace_s)
        ids.append(request.hash_ids)
        inputs.append(request.input_length)
        outputs.append(max(1, request.output_length))
        idle.append(idle_ttft_ms(timing, request.input_length, hit))
    span = (times[-1] - times[0]) / speedup if len(times) > 1 else 0.0
    arrivals = [t / speedup for t in times]
    return TraceWorkload(
        ids,
        arrivals,
        inputs,
        outputs,
        idle,
        span,
        bound.hit_rate,
        bound.prompt_tokens,
        Prompts(index.block_size),
        timing.time_scale,
        skipped,
        peak_rate(arrivals),
    )
