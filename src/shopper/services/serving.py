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
from shopper.ports.flags import FlagClient

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
    def __init__(
        self, cache: RecommendationCache, clock: Clock, flags: FlagClient | None = None
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._flags = flags
        self._last_outage_log = 0.0

    def recommend(self, request: PageRequest) -> RecommendationList:
        """Always answers: an unknown shopper on an empty system gets an empty popular list.
        The list is the shopper's assigned variant's (the champion's standing in while it
        has none) and says that variant, whichever list served them."""
        subject = subject_key(request.user_id, request.session_id)
        variant, champion = self._variant_of(subject)
        key = ListKey(subject, variant) if subject else None
        segments = popularity_segments(request.country, request.device)
        try:
            page = self._cache.read_page(key, segments, request.context_item)
            if subject and variant != champion and page.last_known_good is None:
                # The variant's list is not written yet (a ramp, a new shopper): the
                # champion's stands in. A second round trip, for this case only.
                theirs = self._cache.read_page(ListKey(subject, champion), [], None)
                page = replace(page, stand_in=theirs.fresh or theirs.last_known_good)
                page = replace(page, sold_out=page.sold_out | theirs.sold_out)
        except Exception:  # never an error on the page: an empty list is an answer
            self._log_outage()
            return RecommendationList((), variant, Source.POPULAR, self._clock.now(), "")
        exclude = [request.context_item] if request.context_item else []
        chosen = choose_list(page, request.k, exclude)
        if chosen is None:
            return RecommendationList((), variant, Source.POPULAR, self._clock.now(), "")
        return replace(chosen, variant=variant)

    def _variant_of(self, subject: str | None) -> tuple[str, str]:
        """(the shopper's assigned variant, the champion)."""
        if self._flags is None:
            return DEFAULT_VARIANT, DEFAULT_VARIANT
        champion = self._flags.experiment().champion.name
        if not subject:
            return champion, champion
        return self._flags.assign(subject).variant, champion

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
