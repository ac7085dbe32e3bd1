"""What every scheduling step sees about one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.router.engine import Engine, Role
from runtime.router.prompt_blocks import PromptBlocks


@dataclass
class SchedulingContext:
    request_id: str
    blocks: PromptBlocks
    session: str | None = None
    prefix_matches: dict[str, int] = field(default_factory=dict)
    """Engine URL -> leading prompt blocks it holds (from the prefix index)."""
    excluded: set[str] = field(default_factory=set)
    """Engines already tried for this request (retries go elsewhere)."""

    def held_blocks(self, engine: Engine) -> int:
        """Leading prompt blocks the engine holds. None for an engine whose KV block size (read from its metrics)
        differs from the router's: its blocks do not line up with the prompt's, so it gets no prefix credit."""
        if engine.block_size is not None and engine.block_size != self.blocks.block_size:
            return 0
        return self.prefix_matches.get(engine.url, 0)

    def matched_tokens(self, engine: Engine) -> int:
        return self.blocks.tokens_in(self.held_blocks(engine))


@dataclass(frozen=True)
class Pick:
    engine: Engine
    role: Role
    score: float
    scores: dict[str, float]
    """Each scorer's score for the picked engine, by scorer name."""
