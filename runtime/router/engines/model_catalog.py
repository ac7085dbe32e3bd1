"""The models the router serves: what the engines' /v1/models report, or the configured name until they answer."""

from __future__ import annotations

import time
from typing import Any

from runtime.router.engines.engine import Engine


class ModelCatalog:
    def __init__(self, served_name: str) -> None:
        self.served_name = served_name
        self._by_engine: dict[str, list[dict[str, Any]]] = {}

    def update(self, engine_url: str, models: list[dict[str, Any]]) -> None:
        self._by_engine[engine_url] = [model for model in models if isinstance(model, dict) and "id" in model]

    def forget(self, engine_url: str) -> None:
        self._by_engine.pop(engine_url, None)

    # the registry's listener: an engine that leaves takes its models along
    def engine_added(self, engine: Engine) -> None:
        pass

    def engine_removed(self, engine: Engine) -> None:
        self.forget(engine.url)

    def engine_reset(self, engine: Engine) -> None:
        pass

    def max_model_len(self, model: str) -> int | None:
        """The smallest ``max_model_len`` any engine reports for the model (vLLM's /v1/models carries it)."""
        lengths = [entry["max_model_len"] for models in self._by_engine.values() for entry in models
                   if entry["id"] == model and isinstance(entry.get("max_model_len"), int)]
        return min(lengths, default=None)

    def listing(self) -> dict[str, Any]:
        seen: dict[str, dict[str, Any]] = {}
        for models in self._by_engine.values():
            for model in models:
                seen.setdefault(model["id"], model)
        if not seen:
            seen[self.served_name] = {"id": self.served_name, "object": "model", "created": int(time.time()),
                                      "owned_by": "pdstack"}
        return {"object": "list", "data": list(seen.values())}

    def knows(self, model: str) -> bool:
        if model == self.served_name:
            return True
        return any(entry["id"] == model for models in self._by_engine.values() for entry in models)
