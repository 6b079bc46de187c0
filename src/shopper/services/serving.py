"""The read side of the API: one cache round trip, stock filtering, fallbacks. No models."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from shopper.domain.event import subject_key
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    RecommendationList,
    Source,
    choose_list,
)
from shopper.domain.segment import popularity_segments
from shopper.ports.cache import ListKey, RecommendationCache
from shopper.ports.clock import Clock

log = logging.getLogger(__name__)
OUTAGE_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class PageRequest:
    user_id: str | None = None
    session_id: str | None = None
    k: int = 10
    context_item: str | None = None
    country: str | None = None
    device: str | None = None


class RecommendationReader:
    def __init__(self, cache: RecommendationCache, clock: Clock) -> None:
        self._cache = cache
        self._clock = clock
        self._last_outage_log = 0.0

    def recommend(self, request: PageRequest) -> RecommendationList:
        """Always answers: an unknown shopper on an empty system gets an empty popular list."""
        subject = subject_key(request.user_id, request.session_id)
        key = ListKey(subject, DEFAULT_VARIANT) if subject else None
        segments = popularity_segments(request.country, request.device)
        try:
            page = self._cache.read_page(key, segments, request.context_item)
        except Exception:  # never an error on the page: an empty list is an answer
            self._log_outage()
            return RecommendationList((), DEFAULT_VARIANT, Source.POPULAR, self._clock.now(), "")
        exclude = [request.context_item] if request.context_item else []
        chosen = choose_list(page, request.k, exclude)
        if chosen is None:
            return RecommendationList((), DEFAULT_VARIANT, Source.POPULAR, self._clock.now(), "")
        return chosen

    def similar(self, item_id: str, k: int) -> RecommendationList:
        """The item's `k` most similar items in stock. Always answers: an item without a
        similar list (unknown, or no model yet) or a cache outage gets an empty list."""
        try:
            ranked, sold_out = self._cache.read_similar(item_id)
        except Exception:  # never an error on the page: an empty list is an answer
            self._log_outage()
            ranked = None
        if ranked is None:
            return RecommendationList((), DEFAULT_VARIANT, Source.SIMILAR, self._clock.now(), "")
        shown = ranked.without(sold_out)
        return replace(shown, items=shown.items[:k])

    def _log_outage(self) -> None:
        # Nothing is shown rather than anything stale: without the cache, the live stock
        # set is unknown too, and a sold-out item must never be shown.
        now = time.monotonic()
        if now - self._last_outage_log > OUTAGE_LOG_EVERY_S:
            self._last_outage_log = now
            log.exception("cache read failed; serving an empty list until it is back")
