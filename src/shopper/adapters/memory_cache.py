"""In-memory recommendation cache with per-key timestamps and last-known-good copies.

Lists and similar lists expire as their Redis keys do (docs/redis-keys.md): a list is
stored once, fresh for `fresh_ttl_s` from its write, last known good until
`max(fresh_ttl_s, lkg_ttl_s)`, then dropped (`shopper.adapters.memory_expiry`)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

from shopper.adapters.memory_expiry import ExpiringMap, Sweeper, sweep
from shopper.domain.event import StockChange
from shopper.domain.recommendation import PageRead, RecommendationList
from shopper.ports.cache import ListKey
from shopper.ports.clock import Clock


class InMemoryRecommendationCache:
    """Fresh lists expire after `fresh_ttl_s`; their last-known-good copy after `lkg_ttl_s`."""

    def __init__(self, clock: Clock, fresh_ttl_s: float, lkg_ttl_s: float) -> None:
        self._clock = clock
        self._fresh_ttl = fresh_ttl_s
        self._lkg_ttl = lkg_ttl_s
        # One copy per list, as in Redis: its age says whether it is fresh or last known good.
        self._lists: ExpiringMap[ListKey, RecommendationList] = ExpiringMap(
            max(fresh_ttl_s, lkg_ttl_s)
        )
        self._entries = self._lists.entries  # read directly on the page path
        self._popular: dict[str, RecommendationList] = {}
        self._similar: ExpiringMap[str, RecommendationList] = ExpiringMap(lkg_ttl_s)
        self._sold_out: set[str] = set()
        self._stock_ts: dict[str, float] = {}
        self._lock = threading.Lock()
        Sweeper.register(self.sweep)

    def sweep(self) -> int:
        """Drop the expired lists and similar lists (the `Sweeper` calls this every
        second; writes sweep too); returns how many."""
        return sweep(self._lock, self._clock.now(), self._lists, self._similar)

    def write_lists(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        now = self._clock.now()
        with self._lock:
            for key, ranked in lists:
                self._lists.put(key, ranked, now)
            self._lists.expire(now)

    def write_popular(self, segment: str, ranked: RecommendationList) -> None:
        with self._lock:
            self._popular[segment] = ranked

    def set_stock(self, changes: Sequence[StockChange]) -> None:
        with self._lock:
            for change in changes:
                if self._stock_ts.get(change.item_id, float("-inf")) > change.ts:
                    continue  # a newer word on this item is already applied
                self._stock_ts[change.item_id] = change.ts
                if change.in_stock:
                    self._sold_out.discard(change.item_id)
                else:
                    self._sold_out.add(change.item_id)

    def sold_out_among(self, item_ids: Collection[str]) -> set[str]:
        with self._lock:
            return self._sold_out.intersection(item_ids)

    def read_page(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None = None
    ) -> PageRead:
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            fresh = lkg = None
            if entry is not None:
                age = now - entry[1]
                fresh = entry[0] if age <= self._fresh_ttl else None
                lkg = entry[0] if age <= self._lkg_ttl else None
            popular = tuple(self._popular[s] for s in segments if s in self._popular)
            similar = self._similar.get(context_item, now) if context_item else None
            lists = (fresh, lkg, *popular, similar)
            shown = {i for r in lists if r is not None for i in r.item_ids()}
            return PageRead(fresh, lkg, popular, frozenset(shown & self._sold_out), similar)

    def write_similar(self, lists: Sequence[tuple[str, RecommendationList]]) -> None:
        now = self._clock.now()
        with self._lock:
            for item_id, ranked in lists:
                self._similar.put(item_id, ranked, now)
            self._similar.expire(now)

    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        now = self._clock.now()
        with self._lock:
            ranked = self._similar.get(item_id, now)
            if ranked is None:
                return None, frozenset()
            return ranked, frozenset(self._sold_out.intersection(ranked.item_ids()))

    def list_age(self, key: ListKey) -> float | None:
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None or now - entry[1] > self._lists.ttl_s else now - entry[1]
