"""The read side of the API: one cache round trip, stock filtering, fallbacks. No models."""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shopper.domain.event import subject_key
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    PageRead,
    RecommendationList,
    Source,
    choose_list,
)
from shopper.domain.segment import DEFAULT_SEGMENTS, SegmentPolicy
from shopper.ports.cache import ListKey, PageCache, RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.flags import FlagClient
from shopper.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
CHAMPION_RECHECK_S = 0.25  # a flag change reaches the page within this much more


@dataclass(frozen=True, slots=True)
class PageRequest:
    user_id: str | None = None
    session_id: str | None = None
    k: int = 10
    context_item: str | None = None
    country: str | None = None
    device: str | None = None
    shown: bool = True  # False: fetched but not shown (a prefetch, a probe): no impression


class DirectPageCache:
    """PageCache over a RecommendationCache whose reads never wait (the in-memory one):
    the page path calls it directly on the event loop."""

    def __init__(self, cache: RecommendationCache) -> None:
        self._cache = cache

    async def read_page(
        self,
        key: ListKey | None,
        segments: Sequence[str],
        context_item: str | None = None,
        visible: int | None = None,
    ) -> PageRead:
        return self._cache.read_page(key, segments, context_item)

    async def read_similar(self, item_id: str) -> tuple[RecommendationList | None, Container[str]]:
        return self._cache.read_similar(item_id)

    def status(self) -> dict[str, Any]:
        return {}

    async def wait_current(self, timeout_s: float) -> None:
        return None  # reads go to the cache itself

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a page request reads: the shopper's list of their variant, and whose stands in."""

    key: ListKey | None
    segments: list[str]
    variant: str
    champion: str

    def stand_in_key(self, page: PageRead) -> ListKey | None:
        """The champion's list to read when the variant has none for this shopper (a ramp,
        a new shopper): a second round trip, for this case only."""
        if self.key is None or self.variant == self.champion or page.last_known_good is not None:
            return None
        return ListKey(self.key.subject, self.champion)


class RecommendationReader:
    """The page read, with the same steps whether the cache is read synchronously (the demo,
    tools) or awaited on the API's event loop (`pages`, by default the cache itself)."""

    def __init__(
        self,
        cache: RecommendationCache,
        clock: Clock,
        flags: FlagClient | None = None,
        pages: PageCache | None = None,
        segments: SegmentPolicy = DEFAULT_SEGMENTS,
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._segments = segments
        self._flags = flags
        self._pages = pages or DirectPageCache(cache)
        self._outages = ThrottledLog(log)
        self._champion_name = DEFAULT_VARIANT
        self._champion_at = float("-inf")

    def recommend(self, request: PageRequest) -> RecommendationList:
        """Always answers: an unknown shopper on an empty system gets an empty popular list.
        The list is the shopper's assigned variant's (the champion's standing in while it
        has none) and says that variant, whichever list served them."""
        plan = self._plan(request)
        try:
            page = self._cache.read_page(plan.key, plan.segments, request.context_item)
            if (champion := plan.stand_in_key(page)) is not None:
                page = _with_stand_in(page, self._cache.read_page(champion, [], None))
        except Exception:  # never an error on the page: an empty list is an answer
            return self._outage(plan.variant)
        return self._choose(page, request, plan.variant)

    async def recommend_async(self, request: PageRequest) -> RecommendationList:
        """`recommend`, awaiting the cache without holding the event loop."""
        plan = self._plan(request)
        try:
            page = await self._pages.read_page(
                plan.key, plan.segments, request.context_item, visible=request.k
            )
            if (champion := plan.stand_in_key(page)) is not None:
                theirs = await self._pages.read_page(champion, [], None, visible=request.k)
                page = _with_stand_in(page, theirs)
        except Exception:  # never an error on the page: an empty list is an answer
            return self._outage(plan.variant)
        return self._choose(page, request, plan.variant)

    def _plan(self, request: PageRequest) -> _Plan:
        subject = subject_key(request.user_id, request.session_id)
        variant, champion = self._variant_of(subject)
        key = ListKey(subject, variant) if subject else None
        segments = self._segments.segments(request.country, request.device)
        return _Plan(key, segments, variant, champion)

    def _choose(self, page: PageRead, request: PageRequest, variant: str) -> RecommendationList:
        exclude = [request.context_item] if request.context_item else []
        chosen = choose_list(page, request.k, exclude)
        if chosen is None:
            return RecommendationList((), variant, Source.POPULAR, self._clock.now(), "")
        return chosen.served_as(chosen.source, variant)

    def _outage(self, variant: str) -> RecommendationList:
        self._log_outage()
        return RecommendationList((), variant, Source.POPULAR, self._clock.now(), "")

    def _variant_of(self, subject: str | None) -> tuple[str, str]:
        """(the shopper's assigned variant, the champion)."""
        if self._flags is None:
            return DEFAULT_VARIANT, DEFAULT_VARIANT
        champion = self._champion()
        if not subject:
            return champion, champion
        return self._flags.assign(subject).variant, champion

    def _champion(self) -> str:
        """The experiment's champion, looked up at most every CHAMPION_RECHECK_S: the flag
        client's check of its source (a file's stat) would be a tenth of a page's time."""
        assert self._flags is not None
        now = time.monotonic()
        if now - self._champion_at >= CHAMPION_RECHECK_S:
            self._champion_name = self._flags.experiment().champion.name
            self._champion_at = now
        return self._champion_name

    def similar(self, item_id: str, k: int) -> RecommendationList:
        """The item's `k` most similar items in stock. Always answers: an item without a
        similar list (unknown, or no model yet) or a cache outage gets an empty list."""
        try:
            ranked, sold_out = self._cache.read_similar(item_id)
        except Exception:  # never an error on the page: an empty list is an answer
            self._log_outage()
            ranked, sold_out = None, frozenset()
        return self._similar(ranked, sold_out, k)

    async def similar_async(self, item_id: str, k: int) -> RecommendationList:
        """`similar`, awaiting the cache without holding the event loop."""
        try:
            ranked, sold_out = await self._pages.read_similar(item_id)
        except Exception:  # never an error on the page: an empty list is an answer
            self._log_outage()
            ranked, sold_out = None, frozenset()
        return self._similar(ranked, sold_out, k)

    def _similar(
        self, ranked: RecommendationList | None, sold_out: Container[str], k: int
    ) -> RecommendationList:
        if ranked is None:
            return RecommendationList((), DEFAULT_VARIANT, Source.SIMILAR, self._clock.now(), "")
        shown = ranked.without(sold_out)
        return shown.with_items(shown.items[:k])

    def page_cache_status(self) -> dict[str, Any]:
        return self._pages.status()

    async def shows_changes(self, timeout_s: float) -> bool:
        """Wait until this process's pages show the changes written so far (the live stock
        set the API just changed), at most `timeout_s`; False if they may not yet."""
        try:
            await self._pages.wait_current(timeout_s)
        except Exception:  # the page path follows the change within its bound regardless
            return False
        return True

    async def close(self) -> None:
        await self._pages.close()

    def _log_outage(self) -> None:
        # Nothing is shown rather than anything stale: without the cache and without a
        # recent copy of it (the page cache's, while Redis is down), the live stock set is
        # unknown too, and a sold-out item must never be shown.
        self._outages.failure(
            "cache read failed; serving an empty list until it is back", traceback=False
        )


def _with_stand_in(page: PageRead, theirs: PageRead) -> PageRead:
    """The page with the champion's list standing in for the variant's missing one."""
    sold_out = page.sold_out
    if theirs.sold_out is not sold_out:  # else one live set already answers for both
        sold_out = frozenset(page.sold_out) | frozenset(theirs.sold_out)
    return replace(page, stand_in=theirs.fresh or theirs.last_known_good, sold_out=sold_out)
