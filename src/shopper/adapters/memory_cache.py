"""In-memory recommendation cache with per-key timestamps and last-known-good copies."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

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
        self._fresh: dict[ListKey, tuple[RecommendationList, float]] = {}
        self._lkg: dict[ListKey, tuple[RecommendationList, float]] = {}
        self._popular: dict[str, RecommendationList] = {}
        self._similar: dict[str, tuple[RecommendationList, float]] = {}
        self._sold_out: set[str] = set()
        self._stock_ts: dict[str, float] = {}
        self._lock = threading.Lock()

    def write_lists(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        now = self._clock.now()
        with self._lock:
            for key, ranked in lists:
                self._fresh[key] = (ranked, now)
                self._lkg[key] = (ranked, now)

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
            fresh = self._live(self._fresh, key, now, self._fresh_ttl)
            lkg = self._live(self._lkg, key, now, self._lkg_ttl)
            popular = tuple(self._popular[s] for s in segments if s in self._popular)
            entry = self._similar.get(context_item) if context_item else None
            similar = entry[0] if entry and now - entry[1] <= self._lkg_ttl else None
            lists = (fresh, lkg, *popular, similar)
            shown = {i for r in lists if r is not None for i in r.item_ids()}
            return PageRead(fresh, lkg, popular, frozenset(shown & self._sold_out), similar)

    def write_similar(self, lists: Sequence[tuple[str, RecommendationList]]) -> None:
        now = self._clock.now()
        with self._lock:
            for item_id, ranked in lists:
                self._similar[item_id] = (ranked, now)

    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        now = self._clock.now()
        with self._lock:
            entry = self._similar.get(item_id)
            if entry is None or now - entry[1] > self._lkg_ttl:
                return None, frozenset()
            return entry[0], frozenset(self._sold_out.intersection(entry[0].item_ids()))

    def list_age(self, key: ListKey) -> float | None:
        with self._lock:
            entry = self._fresh.get(key)
        return None if entry is None else self._clock.now() - entry[1]

    @staticmethod
    def _live(
        store: dict[ListKey, tuple[RecommendationList, float]],
        key: ListKey | None,
        now: float,
        ttl: float,
    ) -> RecommendationList | None:
        entry = store.get(key) if key is not None else None
        if entry is None or now - entry[1] > ttl:
            return None
        return entry[0]
