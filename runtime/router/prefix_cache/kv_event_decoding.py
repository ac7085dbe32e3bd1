"""vLLM's KV-cache events off the wire: a msgpack ``[timestamp, [events...], dp_rank]`` batch whose events are maps
with a ``"type"`` key (vLLM >= 0.11) or, in older releases, positional arrays with the type name first. Both decode
to the same three event classes; unknown event types are skipped, malformed batches raise ``ValueError``."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack


@dataclass(frozen=True)
class BlockStored:
    block_hashes: list[Hashable]
    parent_block_hash: Hashable | None
    token_ids: list[int]
    block_size: int
    medium: str | None = None


@dataclass(frozen=True)
class BlockRemoved:
    block_hashes: list[Hashable]
    medium: str | None = None


@dataclass(frozen=True)
class AllBlocksCleared:
    pass


KvEvent = BlockStored | BlockRemoved | AllBlocksCleared

# Field order of the positional (array) layout, after the type tag.
_ARRAY_FIELDS: dict[str, tuple[str, ...]] = {
    "BlockStored": ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium"),
    "BlockRemoved": ("block_hashes", "medium"),
    "AllBlocksCleared": (),
}


@dataclass(frozen=True)
class KvEventBatch:
    timestamp: float
    events: list[KvEvent]
    data_parallel_rank: int | None


def decode_batch(payload: bytes) -> KvEventBatch:
    try:
        batch = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
    except (msgpack.UnpackException, ValueError, TypeError) as error:
        raise ValueError(f"not a msgpack KV event batch: {error}") from None
    if not isinstance(batch, list) or len(batch) < 2 or not isinstance(batch[1], list):
        raise ValueError("a KV event batch is [timestamp, [events...], dp_rank]")
    events = [event for event in (decode_event(raw) for raw in batch[1]) if event is not None]
    rank = batch[2] if len(batch) > 2 and isinstance(batch[2], int) else None
    return KvEventBatch(timestamp=float(batch[0] or 0.0), events=events, data_parallel_rank=rank)


def decode_event(raw: Any) -> KvEvent | None:
    if isinstance(raw, dict):
        kind, fields = raw.get("type"), raw
    elif isinstance(raw, Sequence) and raw and isinstance(raw[0], str):
        kind = raw[0]
        fields = dict(zip(_ARRAY_FIELDS.get(kind, ()), raw[1:], strict=False))
    else:
        raise ValueError(f"a KV event is a map or a tagged array, got {type(raw).__name__}")
    if kind == "BlockStored":
        hashes, tokens, size = fields.get("block_hashes"), fields.get("token_ids"), fields.get("block_size")
        if not isinstance(hashes, list) or not isinstance(tokens, list) or not isinstance(size, int):
            raise ValueError("BlockStored needs block_hashes, token_ids and block_size")
        return BlockStored(
            [_hashable(h) for h in hashes],
            _hashable(fields.get("parent_block_hash")),
            tokens,
            size,
            fields.get("medium"),
        )
    if kind == "BlockRemoved":
        hashes = fields.get("block_hashes")
        if not isinstance(hashes, list):
            raise ValueError("BlockRemoved needs block_hashes")
        return BlockRemoved([_hashable(h) for h in hashes], fields.get("medium"))
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    return None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
