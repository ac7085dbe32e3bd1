"""What every scheduling step sees about one request, the plan the scheduler makes of it, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.roles import Role
from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks
from runtime.router.prefix_cache.tiers import HOST_HIT_WEIGHT, HOST_LOAD_COST
from runtime.router.scheduling.pd_decider import PdDecision


@dataclass
class SchedulingContext:
    request_id: str
    blocks: PromptBlocks
    session: str | None = None
    single_leg: str | None = None
    """Why the request cannot be split into two legs (a batch, several choices), or None."""
    prefix_matches: dict[str, int] = field(default_factory=dict)
    """Engine URL -> leading prompt blocks it holds (from the prefix index)."""
    excluded: set[str] = field(default_factory=set)
    """Engines already tried for this request (retries go elsewhere)."""
    decode: Engine | None = None
    """The decode engine picked (set before the prefill pick: a prefill is picked for it)."""
    pending_matches: dict[str, int] = field(default_factory=dict)
    """Engine URL -> leading prompt blocks that requests in flight are sending it (see pending_prefixes)."""
    host_matches: dict[str, int] = field(default_factory=dict)
    """Engine URL -> how many of its held leading blocks it holds only on its host tier (prefix_cache/tiers.py)."""
    ranks: dict[str, int] = field(default_factory=dict)
    """Engine URL -> the local data-parallel rank holding its matched blocks (engines of several ranks only:
    prefix_cache/dp_ranks.py); a leg to it names that rank."""

    def rank(self, engine: Engine) -> int | None:
        return self.ranks.get(engine.url)

    def held_blocks(self, engine: Engine) -> int:
        """Leading prompt blocks the engine holds. None for an engine whose KV block size (read from its metrics)
        differs from the router's: its blocks do not line up with the prompt's, so it gets no prefix credit."""
        if engine.block_size is not None and engine.block_size != self.blocks.block_size:
            return 0
        return self.prefix_matches.get(engine.url, 0)

    def host_blocks(self, engine: Engine) -> int:
        """Of :meth:`held_blocks`, those the engine holds only on its host tier (copied back into HBM on a hit)."""
        if engine.block_size is not None and engine.block_size != self.blocks.block_size:
            return 0
        return self.host_matches.get(engine.url, 0)

    def expected_blocks(self, engine: Engine) -> float:
        """Leading prompt blocks the engine holds or is being sent by requests in flight (what locality scores), a
        block held only on its host counting HOST_HIT_WEIGHT of one in HBM."""
        if engine.block_size is not None and engine.block_size != self.blocks.block_size:
            return 0
        held = self.prefix_matches.get(engine.url, 0) - (1 - HOST_HIT_WEIGHT) * self.host_matches.get(engine.url, 0)
        return max(held, self.pending_matches.get(engine.url, 0))

    def matched_tokens(self, engine: Engine) -> int:
        return self.blocks.tokens_in(self.held_blocks(engine))

    def cached_tokens(self, engine: Engine) -> int:
        """What the P/D decider counts cached on the engine: the matched tokens, less the copy-back cost of those on
        its host tier (HOST_LOAD_COST of their recompute each)."""
        return self.matched_tokens(engine) - round(self.blocks.tokens_in(self.host_blocks(engine)) * HOST_LOAD_COST)


@dataclass(frozen=True)
class Pick:
    engine: Engine
    role: Role
    score: float
    scores: dict[str, float]
    """Each scorer's score for the picked engine, by scorer name."""


@dataclass(frozen=True)
class RoutingPlan:
    """One request's route, decided once: the decode pick, the prefill pick (None: decode alone), and why."""

    context: SchedulingContext
    decode: Pick
    prefill: Pick | None
    decision: PdDecision

    def log_fields(self) -> dict[str, object]:
        blocks = self.context.blocks
        return {
            "decision": self.decision.decision,
            "reason": self.decision.reason,
            "decode": self.decode.engine.name,
            "decode_scores": self.decode.scores,
            "prefill": self.prefill.engine.name if self.prefill else None,
            "prompt_tokens": blocks.prompt_tokens,
            "predicted_cached_tokens": self.context.matched_tokens(self.decode.engine),
            "exact_tokens": blocks.exact,
        }


@dataclass
class Served:
    """What came of a plan: the engines that really served (retries and fallbacks may differ from the plan)."""

    decode: Engine
    prefill: Engine | None = None
    status: int = 0
