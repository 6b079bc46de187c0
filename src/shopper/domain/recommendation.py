"""Recommendation lists as written by the processor and served by the API."""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Source(StrEnum):
    # Append only: Redis stores a list's source as its position in this enum.
    PERSONALIZED = "personalized"
    LAST_KNOWN_GOOD = "last_known_good"
    POPULAR = "popular"
    SIMILAR = "similar"  # an item's similar items (product pages), not a shopper's list
    # The champion's list, served to a shopper whose assigned variant has none (yet).
    CHAMPION = "champion"


DEFAULT_VARIANT = "champion"


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float


@dataclass(frozen=True, slots=True)
class RecommendationList:
    items: tuple[ScoredItem, ...]
    variant: str
    source: Source
    generated_at: float
    list_id: str
    # Which tier the shopper was in and which model made the list ("" for popular lists).
    tier: str = ""
    model: str = ""

    def item_ids(self) -> list[str]:
        return [s.item_id for s in self.items]

    def without(self, excluded: Container[str]) -> RecommendationList:
        if not excluded:
            return self
        return self.with_items(tuple(s for s in self.items if s.item_id not in excluded))

    # The page path's copies: a constructor call, several times cheaper than `replace`.
    def with_items(self, items: tuple[ScoredItem, ...]) -> RecommendationList:
        return RecommendationList(
            items, self.variant, self.source, self.generated_at, self.list_id, self.tier, self.model
        )

    def served_as(self, source: Source, variant: str | None = None) -> RecommendationList:
        """This list as served from `source` (for `variant`)."""
        return RecommendationList(
            self.items,
            self.variant if variant is None else variant,
            source,
            self.generated_at,
            self.list_id,
            self.tier,
            self.model,
        )


@dataclass(frozen=True, slots=True)
class PageRead:
    """Everything the page path fetched from the cache in its one round trip."""

    fresh: RecommendationList | None
    last_known_good: RecommendationList | None
    popular: tuple[RecommendationList, ...]
    # Which of the items read are sold out (a set that may hold other items too).
    sold_out: Collection[str]
    similar: RecommendationList | None = None  # of the item on the page, if one was asked
    # The champion's fresh (else last-known-good) list, read when the shopper's assigned
    # variant has no list of its own.
    stand_in: RecommendationList | None = None


def choose_list(page: PageRead, k: int, exclude: Iterable[str] = ()) -> RecommendationList | None:
    """Pick what the page shows: fresh, else last known good, else the champion's list
    standing in for a variant's missing one, else popularity.

    Sold-out and excluded items are dropped at read time, so a stale list never shows an
    item that sold out after it was written. A short list is topped up from popularity.
    """
    excluded = frozenset(exclude)
    hidden: Container[str] = Hidden(page.sold_out, excluded) if excluded else page.sold_out
    chosen: RecommendationList | None = None
    if page.fresh is not None:
        chosen = page.fresh.without(hidden)
    elif page.last_known_good is not None:
        chosen = page.last_known_good.without(hidden).served_as(Source.LAST_KNOWN_GOOD)
    elif page.stand_in is not None:
        chosen = page.stand_in.without(hidden).served_as(Source.CHAMPION)
    similar = page.similar.without(hidden) if page.similar is not None else None
    if similar is not None and similar.items:
        # The item on the page drives the list for that page: blended into the shopper's
        # own list, or, for a shopper with none yet, the list itself.
        chosen = similar if chosen is None or not chosen.items else with_context(chosen, similar)
    if chosen is not None and len(chosen.items) >= k:
        return chosen.with_items(chosen.items[:k])  # no top-up: popularity unread
    fallbacks = [p.without(hidden) for p in page.popular]
    if chosen is None or not chosen.items:
        chosen = next((p for p in fallbacks if p.items), fallbacks[0] if fallbacks else None)
        if chosen is None:
            return None
    return _top_up(chosen, fallbacks, k)


class Hidden:
    """Items not to show: sold out or excluded, without copying the (large) sold-out set."""

    __slots__ = ("excluded", "sold_out")

    def __init__(self, sold_out: Container[str], excluded: Container[str]) -> None:
        self.sold_out = sold_out
        self.excluded = excluded

    def __contains__(self, item: object) -> bool:
        return item in self.excluded or item in self.sold_out


CONTEXT_WEIGHT = 0.5  # share of a page's list that the item on the page decides


def with_context(own: RecommendationList, similar: RecommendationList) -> RecommendationList:
    """The shopper's list re-scored with the page item's similar list: each item's score is
    `1 - CONTEXT_WEIGHT` of its own score plus `CONTEXT_WEIGHT` of its similarity, so an
    item both personal and similar to the page rises to the top."""
    scores = {s.item_id: (1 - CONTEXT_WEIGHT) * s.score for s in own.items}
    for s in similar.items:
        scores[s.item_id] = scores.get(s.item_id, 0.0) + CONTEXT_WEIGHT * s.score
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return replace(own, items=tuple(ScoredItem(i, round(v, 6)) for i, v in ranked if v > 0))


def _top_up(
    chosen: RecommendationList, fallbacks: list[RecommendationList], k: int
) -> RecommendationList:
    items = list(chosen.items[:k])
    seen = {s.item_id for s in items}
    # A top-up was scored by popularity, not for this shopper: it ranks below every pick
    # (half the lowest pick's score, times its own popularity). Nothing without a score
    # of its own pads a list.
    scale = 0.5 * min((s.score for s in items), default=2.0)
    for fallback in fallbacks:
        for s in fallback.items:
            if len(items) >= k:
                break
            if s.item_id not in seen and s.score > 0:
                seen.add(s.item_id)
                items.append(ScoredItem(s.item_id, round(scale * s.score, 6)))
    return replace(chosen, items=tuple(items))
