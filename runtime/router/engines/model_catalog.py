"""The models the router serves: what the engines' /v1/models report (each engine's record holds its own list), or
the configured name until they answer."""

from __future__ import annotations

import time
from typing import Any

from runtime.router.engines.registry import EngineRegistry


class ModelCatalog:
    def __init__(self, served_name: str, registry: EngineRegistry) -> None:
        self.served_name = served_name
        self.registry = registry

    def _entries(self) -> list[dict[str, Any]]:
        return [entry for engine in self.registry for entry in engine.models]

    def max_model_len(self, model: str) -> int | None:
        """The smallest ``max_model_len`` any engine reports for the model (vLLM's /v1/models carries it)."""
        lengths = [
            entry["max_model_len"]
            for entry in self._entries()
            if entry["id"] == model and isinstance(entry.get("max_model_len"), int)
        ]
        return min(lengths, default=None)

    def listing(self) -> dict[str, Any]:
        seen: dict[str, dict[str, Any]] = {}
        for model in self._entries():
            seen.setdefault(model["id"], model)
        if not seen:
            seen[self.served_name] = {
                "id": self.served_name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "pdstack",
            }
        return {"object": "list", "data": list(seen.values())}

    def knows(self, model: str) -> bool:
        if model == self.served_name:
            return True
        return any(entry["id"] == model for entry in self._entries())
