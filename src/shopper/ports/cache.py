"""The recommendation cache: what the page reads, in one round trip."""

from __future__ import annotations

from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shopper.domain.event import StockChange
from shopper.domain.recommendation import PageRead, RecommendationList


@dataclass(frozen=True, slots=True)
class ListKey:
    subject: str  # "u:<user>" or "s:<session>"
    variant: str


class RecommendationCache(Protocol):
    def write_lists(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        """Store fresh lists (expiring after the fresh TTL) and their last-known-good copies."""
        ...

    def write_popular(self, segment: str, ranked: RecommendationList) -> None: ...

    def set_stock(self, changes: Sequence[StockChange]) -> None:
        """Update the live stock set (only items marked sold out are hidden). Per item, a
        change older than the one already applied is ignored, so two writers that deliver
        the same changes in different orders end in the same state."""
        ...

    def sold_out_among(self, item_ids: Collection[str]) -> set[str]:
        """Which of these items the live stock set marks sold out."""
        ...

    def read_page(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None = None
    ) -> PageRead:
        """Fresh list, last-known-good copy, popular lists by segment, the similar list of
        the item on the page (`context_item`), and which of all their items are sold out,
        fetched together."""
        ...

    def write_similar(self, lists: Sequence[tuple[str, RecommendationList]]) -> None:
        """Store each item's similar items (item id -> its list), kept for the
        last-known-good TTL; a new write for an item replaces its list."""
        ...

    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        """An item's similar list (None if none is stored) and which of its items are sold
        out, fetched together."""
        ...

    def list_age(self, key: ListKey) -> float | None:
        """Seconds since the fresh list for `key` was written, or None if there is none."""
        ...


class PageCache(Protocol):
    """The page path's read of the cache, awaited on the API's event loop: what
    `RecommendationCache.read_page` and `read_similar` answer, without blocking the loop."""

    async def read_page(
        self,
        key: ListKey | None,
        segments: Sequence[str],
        context_item: str | None = None,
        visible: int | None = None,
    ) -> PageRead:
        """As `RecommendationCache.read_page`. With `visible`, the shopper's list may be
        cut after its first `visible` items that are not sold out (all a page of that many
        shows); `sold_out` need only answer `in` for the items read."""
        ...

    async def read_similar(self, item_id: str) -> tuple[RecommendationList | None, Container[str]]:
        """As `RecommendationCache.read_similar`."""
        ...

    def status(self) -> dict[str, Any]:
        """What the page path's reads did (pages answered from a copy, timeouts), for stats;
        empty where pages read the cache directly."""
        ...

    async def wait_current(self, timeout_s: float) -> None:
        """Until this process's page reads show every change the cache holds (a stock change
        this process just wrote, say); TimeoutError past `timeout_s`. Pages never wait."""
        ...

    async def close(self) -> None: ...
