"""The data-parallel ranks behind one engine URL, as the prefix index and the legs see them.

A data-parallel replica serves several engine cores behind one HTTP port per pod (vLLM's hybrid load balancing:
every node serves its own ranks), and each core publishes its own KV events. In vLLM 0.32:

- each scheduler binds its publisher at the configured port plus its *global* data-parallel rank
  (``vllm/v1/core/sched/scheduler.py``: ``EventPublisherFactory.create(kv_events_config,
  parallel_config.data_parallel_index)``, ``data_parallel_index`` being ``data_parallel_rank``;
  ``vllm/distributed/kv_events.py``: ``ZmqEventPublisher.offset_endpoint_port``), and stamps that rank on every
  batch;
- the OpenAI server reads the ``X-data-parallel-rank`` header (``vllm/entrypoints/generate/base/serving.py``:
  ``_get_data_parallel_rank``) and sends the request to that engine core; in hybrid (and external) load balancing
  it is an index into the node's *local* cores: ``InputProcessor.process_inputs`` refuses anything outside
  ``[0, data_parallel_size_local)`` (``vllm/v1/engine/input_processor.py``) and ``DPLBAsyncMPClient`` takes
  ``core_engines[rank]``, the node's cores from its start rank on (``vllm/v1/engine/core_client.py``).

pdstack starts node ``k`` of a replica at global rank ``k * data_parallel_local`` (runtime/worker.py), so global rank
``g`` is local index ``g % data_parallel_local`` on whichever pod hosts it. The router does not know which node a
discovered pod is, so it subscribes to every rank's port of the replica on every pod: the ranks the pod hosts
publish, the others never connect (a ZMQ SUB connect to a closed port just waits).

The index keys a rank's blocks by :func:`holder` (the URL for a dense engine, so nothing changes for one); a
prompt's matches are folded back to engine URLs by :func:`by_engine`, which also says which local rank holds the
longest run, for the leg's header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RANK_HEADER = "X-data-parallel-rank"
_SEPARATOR = "#dp"


def holder(url: str, local_rank: int | None) -> str:
    """The prefix index's name for ``local_rank`` of the engine at ``url`` (None: the engine has one rank)."""
    return url if local_rank is None else f"{url}{_SEPARATOR}{local_rank}"


def engine_of(name: str) -> tuple[str, int | None]:
    """The engine URL and local rank a :func:`holder` name stands for."""
    url, separator, rank = name.rpartition(_SEPARATOR)
    if separator and rank.isdigit():
        return url, int(rank)
    return name, None


def holds_for(name: str, url: str) -> bool:
    """``name`` is the engine at ``url`` or one of its ranks."""
    return engine_of(name)[0] == url


@dataclass(frozen=True)
class RankEndpoint:
    endpoint: str
    global_rank: int | None
    """The rank whose publisher binds ``endpoint`` (and stamps its batches with it); None: a replica of one rank."""
    local_rank: int | None
    """Its index among its pod's ranks, what ``X-data-parallel-rank`` names."""


def rank_endpoints(base: str, data_parallel: int, data_parallel_local: int) -> list[RankEndpoint]:
    """Every KV-event endpoint a pod of a replica with ``data_parallel`` ranks may bind, from the base endpoint
    ``tcp://host:port``."""
    if data_parallel <= 1:
        return [RankEndpoint(base, None, None)]
    host, _, port = base.rpartition(":")
    return [
        RankEndpoint(f"{host}:{int(port) + rank}", rank, rank % data_parallel_local) for rank in range(data_parallel)
    ]


@dataclass
class EngineMatches:
    """A prompt's index matches folded per engine URL: the longest run over its ranks, and that rank."""

    held: dict[str, int] = field(default_factory=dict)
    host: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


def by_engine(held: dict[str, int], host: dict[str, int]) -> EngineMatches:
    """Fold :meth:`PrefixIndex.match_tiers`'s per-holder matches per engine: each engine is credited with its best
    rank's run (a request served by one rank reuses only that rank's blocks), fewer host-only blocks breaking ties."""
    out = EngineMatches()
    for name, blocks in held.items():
        url, rank = engine_of(name)
        on_host = host.get(name, 0)
        best = out.held.get(url)
        if best is not None and (best, -out.host.get(url, 0)) >= (blocks, -on_host):
            continue
        out.held[url] = blocks
        if on_host:
            out.host[url] = on_host
        else:
            out.host.pop(url, None)
        if rank is None:
            out.ranks.pop(url, None)
        else:
            out.ranks[url] = rank
    return out


def with_rank(headers: dict[str, str], rank: int | None) -> dict[str, str]:
    """A leg's headers, naming the local rank to serve it when the router knows one (else vLLM balances)."""
    return headers if rank is None else {**headers, RANK_HEADER: str(rank)}
