"""A short-lived memo of top-n answers, shared by the processor state adapters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

MEMO_LIMIT = 50_000  # answers remembered at most; past that, expired ones are dropped

Ranked = list[tuple[str, float]]


class StaleMemo:
    """Top-n answers per key, reused while younger than `max_age_s`; bounded in size.

    Re-ranking asks for the same item's neighbours for many shoppers in one micro-batch;
    lists are seconds stale anyway, so an answer up to `max_age_s` old is good enough.
    """

    def __init__(self, max_age_s: float, limit: int = MEMO_LIMIT) -> None:
        self._max_age = max_age_s
        self._limit = limit
        self._entries: dict[str, tuple[int, float, Ranked]] = {}
        self._lock = threading.Lock()
        self._last_write = 0.0

    def expire(self) -> None:
        """Forget every answer once none is younger than `max_age_s` (a processor gone
        idle keeps nothing); a busy memo is bounded by `limit` instead. O(1) while busy."""
        now = time.monotonic()
        with self._lock:
            if self._entries and now - self._last_write >= self._max_age:
                self._entries = {}

    def get(self, key: str, n: int, read: Callable[[str, int], Ranked]) -> Ranked:
        if n <= 0:
            return []
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] >= n and now - entry[1] < self._max_age:
            return entry[2][:n]
        result = read(key, n)
        with self._lock:
            if len(self._entries) >= self._limit:
                self._entries = {
                    k: v for k, v in self._entries.items() if now - v[1] < self._max_age
                }
                if len(self._entries) >= self._limit:
                    self._entries.clear()
            self._entries[key] = (n, now, result)
            self._last_write = now
        return result

    def get_many(
        self, keys: Collection[str], n: int, read: Callable[[list[str], int], dict[str, Ranked]]
    ) -> dict[str, Ranked]:
        """`get` for several keys; the ones not remembered are read together."""
        now = time.monotonic()
        out: dict[str, Ranked] = {}
        missing: list[str] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry[0] >= n and now - entry[1] < self._max_age:
                    out[key] = entry[2][:n]
                else:
                    missing.append(key)
        if missing and n > 0:
            fetched = read(missing, n)
            for key in missing:
                out[key] = self.get(key, n, lambda k, _: fetched.get(k, []))
        return out

    def drop(self, key: str) -> None:
        """Forget `key` now: its answer is wrong, not merely a little stale."""
        with self._lock:
            self._entries.pop(key, None)
