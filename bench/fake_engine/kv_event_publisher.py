"""KV cache events over ZMQ in vLLM's wire format: PUB multipart ``[topic, 8-byte big-endian sequence, payload]``,
payload msgpack ``[timestamp, [events...], dp_rank]``, each event a map with a ``"type"`` key (BlockStored,
BlockRemoved, AllBlocksCleared) and vLLM's field names. Events of one event-loop turn (one engine step) go out as
one batch, as vLLM publishes one batch per step."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import zmq


class KvEventPublisher:
    def __init__(self, endpoint: str, topic: str, block_size: int, context: zmq.Context[Any]) -> None:
        self.block_size = block_size
        self.topic = topic.encode()
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 100_000)
        self.socket.bind(endpoint)
        self.sequence = 0
        self._pending: list[dict[str, Any]] = []
        self._scheduled = False

    def stored(self, hashes: list[int], parent: int | None, token_ids: list[int], medium: str = "GPU") -> None:
        self._add(
            {
                "type": "BlockStored",
                "block_hashes": hashes,
                "parent_block_hash": parent,
                "token_ids": token_ids,
                "block_size": self.block_size,
                "lora_id": None,
                "medium": medium,
                "lora_name": None,
            }
        )

    def removed(self, hashes: list[int], medium: str = "GPU") -> None:
        self._add({"type": "BlockRemoved", "block_hashes": hashes, "medium": medium})

    def cleared(self) -> None:
        self._add({"type": "AllBlocksCleared"})

    def _add(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        payload = msgpack.packb([time.time(), self._pending, 0])
        self._pending = []
        self.socket.send_multipart([self.topic, self.sequence.to_bytes(8, "big", signed=True), payload])
        self.sequence += 1

    def close(self) -> None:
        self.socket.close(linger=0)
