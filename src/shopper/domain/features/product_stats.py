"""The `product_stats` features of an item: demand, trend, and what the catalog says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from shopper.domain.event import Event, EventType
from shopper.domain.features.spec import FeatureValue
from shopper.domain.features.timeline import (
    Stamped,
    Timeline,
    event_key,
    is_interaction,
    later,
)
from shopper.domain.features.window import (
    TRENDING_HALF_LIFE_S,
    WINDOW_1H,
    WINDOW_24H,
    Window,
)
from shopper.domain.ranking import decay_factor
from shopper.domain.session import interest_weight

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ItemCarry:
    """What an item's events older than the horizon still tell: its first event and the
    latest price, stock level, listing time and category they stated."""

    first_seen: float | None = None
    price: Stamped[float] | None = None
    stock: Stamped[int] | None = None
    created_at: Stamped[float] | None = None
    category: Stamped[str] | None = None


ItemTimeline = Timeline[ItemCarry]


def price_statement(event: Event) -> float | None:
    """The unit price an event states: a price change, a catalog record, or the price an
    interaction carries (the price at the time of the event)."""
    if event.type is EventType.ITEM_UPSERT:
        return event.item.price if event.item is not None else None
    if event.type is EventType.STOCK_CHANGE:
        return None
    return event.price


def stock_statement(event: Event) -> int | None:
    if event.type is EventType.STOCK_CHANGE:
        return event.quantity
    if event.type is EventType.ITEM_UPSERT and event.item is not None:
        return event.item.stock
    return None


def created_statement(event: Event) -> float | None:
    if event.type is EventType.ITEM_UPSERT and event.item is not None:
        return event.item.created_at
    return None


def category_statement(event: Event) -> str | None:
    """The category path a catalog record states, joined with ` > ` ("" for none)."""
    if event.type is EventType.ITEM_UPSERT and event.item is not None:
        return " > ".join(event.item.category)
    return None


def fold_item(carry: ItemCarry, event: Event) -> ItemCarry:
    """Fold one event that left the horizon into the summary (in any order)."""
    first = event.ts if carry.first_seen is None else min(carry.first_seen, event.ts)
    price = price_statement(event)
    if event.item is None and price is None and event.type is not EventType.STOCK_CHANGE:
        # States nothing (most views): only the first time can change. A shortcut, as
        # the feature state's rebuild folds most of the archive through here.
        return carry if first == carry.first_seen else replace(carry, first_seen=first)
    return ItemCarry(
        first_seen=first,
        price=later(carry.price, _stamp(event, price)),
        stock=later(carry.stock, _stamp(event, stock_statement(event))),
        created_at=later(carry.created_at, _stamp(event, created_statement(event))),
        category=later(carry.category, _stamp(event, category_statement(event))),
    )


def views_1h(t: ItemTimeline) -> int:
    """Views in the last hour."""
    return _count(t, EventType.VIEW, WINDOW_1H)


def purchases_24h(t: ItemTimeline) -> int:
    """Purchase events in the last 24 hours (events, not units)."""
    return _count(t, EventType.PURCHASE, WINDOW_24H)


def view_to_purchase_rate(t: ItemTimeline) -> float:
    """Purchases per view over the last 24 hours; 0.0 without views (may exceed 1 where
    purchases come without views)."""
    views = _count(t, EventType.VIEW, WINDOW_24H)
    return purchases_24h(t) / views if views else 0.0


def trending_score(t: ItemTimeline) -> float:
    """Interest of the last 24 hours (interactions weighted as the ranker weighs them),
    each decayed by its age with a half-life of one hour."""
    return sum(
        (
            interest_weight(e) * decay_factor(t.as_of - e.ts, TRENDING_HALF_LIFE_S)
            for e in t.events
            if is_interaction(e) and WINDOW_24H.contains(e.ts, t.as_of)
        ),
        0.0,
    )


def price(t: ItemTimeline) -> float | None:
    """The latest price stated, or None if no event ever stated one."""
    return _latest(t, price_statement, t.carry.price)


def in_stock(t: ItemTimeline) -> bool:
    """The latest stock level stated is above zero; unknown stock counts as in stock."""
    level = _latest(t, stock_statement, t.carry.stock)
    return level is None or level > 0


def age_hours(t: ItemTimeline) -> float:
    """Hours since the item was listed: the latest `created_at` a catalog record stated,
    else the item's first event. Never negative."""
    listed = _latest(t, created_statement, t.carry.created_at)
    if listed is None:
        listed = t.carry.first_seen if t.carry.first_seen is not None else _first_ts(t)
    return max(t.as_of - listed, 0.0) / 3600.0


def category(t: ItemTimeline) -> str:
    """The category path the latest catalog record stated ("" if none did)."""
    return _latest(t, category_statement, t.carry.category) or ""


def compute_product_stats(t: ItemTimeline) -> dict[str, FeatureValue]:
    return {
        "views_1h": views_1h(t),
        "purchases_24h": purchases_24h(t),
        "view_to_purchase_rate": view_to_purchase_rate(t),
        "trending_score": trending_score(t),
        "price": price(t),
        "in_stock": in_stock(t),
        "age_hours": age_hours(t),
        "category": category(t),
    }


def _count(t: ItemTimeline, type_: EventType, window: Window) -> int:
    return sum(1 for e in t.events if e.type is type_ and window.contains(e.ts, t.as_of))


def _latest(
    t: ItemTimeline, statement: Callable[[Event], T | None], carried: Stamped[T] | None
) -> T | None:
    for e in reversed(t.events):
        value = statement(e)
        if value is not None:
            return value
    return carried.value if carried is not None else None


def _first_ts(t: ItemTimeline) -> float:
    return t.events[0].ts if t.events else t.as_of


def _stamp(event: Event, value: T | None) -> Stamped[T] | None:
    return None if value is None else Stamped(event_key(event), value)
