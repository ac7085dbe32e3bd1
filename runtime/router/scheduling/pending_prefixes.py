"""Prompts routed but not yet known to the prefix index: a request's blocks count toward the engines it was sent to
from the moment it is planned until it ends, served or failed (``ttl_s`` is a backstop for a request that never
reports back). When a leg is retried elsewhere, its blocks move with it to the engine that now computes them.

The index learns a prompt's blocks only once an engine has computed them (precise mode: its KV events; approximate
mode: the served request). Under load, requests sharing a prefix arrive while the first one is still being computed:
with nothing in the index yet they spread by load, and several engines compute the same prefix. Counting the blocks
in flight sends them where the prefix is about to be, as vllm-router's and SGLang's cache-aware routers do by
inserting at routing time. Only the prefix scorer reads these matches; the P/D decider does not (a decode engine
whose prefix is still being prefilled elsewhere does not hold it yet).
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence


class PendingPrefixes:
    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._requests: OrderedDict[str, tuple[float, tuple[str, ...], tuple[int, ...]]] = OrderedDict()
        self._counts: dict[str, defaultdict[int, int]] = {}

    def add(self, request_id: str, urls: Iterable[str], keys: Sequence[int]) -> None:
        now = time.monotonic()
        self._expire(now)
        if not keys or request_id in self._requests:
            return
        urls = tuple(dict.fromkeys(urls))
        self._requests[request_id] = (now + self.ttl_s, urls, tuple(keys))
        for url in urls:
            self._count(url, keys)

    def move(self, request_id: str, from_url: str, to_url: str) -> None:
        """The request's leg on ``from_url`` is retried on ``to_url``: its blocks are on their way there instead.
        The entry keeps its place (and its expiry) in the queue."""
        entry = self._requests.get(request_id)
        if entry is None or from_url not in entry[1] or from_url == to_url:
            return
        expires, urls, keys = entry
        self._uncount(from_url, keys)
        urls = tuple(url for url in urls if url != from_url)
        if to_url not in urls:
            urls = (*urls, to_url)
            self._count(to_url, keys)
        self._requests[request_id] = (expires, urls, keys)

    def remove(self, request_id: str) -> None:
        entry = self._requests.pop(request_id, None)
        if entry is None:
            return
        _, urls, keys = entry
        for url in urls:
            self._uncount(url, keys)

    def _count(self, url: str, keys: Sequence[int]) -> None:
        counts = self._counts.setdefault(url, defaultdict(int))
        for key in keys:
            counts[key] += 1

    def _uncount(self, url: str, keys: Sequence[int]) -> None:
        counts = self._counts[url]
        for key in keys:
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        if not counts:
            del self._counts[url]

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """For every engine with requests in flight: how many of the prompt's leading blocks they send it."""
        matched: dict[str, int] = {}
        for url, counts in self._counts.items():
            depth = 0
            for key in keys:
                if key not in counts:
                    break
                depth += 1
            if depth:
                matched[url] = depth
        return matched

    def _expire(self, now: float) -> None:
        while self._requests:
            request_id, (expires, _, _) = next(iter(self._requests.items()))
            if expires > now:
                return
            self.remove(request_id)
