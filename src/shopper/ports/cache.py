"""The recommendation cache: what the page reads, in one round trip."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

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

    def set_stock(self, in_stock: Iterable[str], sold_out: Iterable[str]) -> None:
        """Update the live stock set: only items marked sold out are hidden."""
        ...

    def read_page(self, key: ListKey | None, segments: Sequence[str]) -> PageRead:
        """Fresh list, last-known-good copy, popular lists by segment, and which of all
        their items are sold out, fetched together."""
        ...

    def list_age(self, key: ListKey) -> float | None:
        """Seconds since the fresh list for `key` was written, or None if there is none."""
        ...
