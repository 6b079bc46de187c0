"""Events: what shoppers and the catalog tell shopper."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from shopper.domain.item import Item


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    IMPRESSION = "impression"
    DWELL = "dwell"
    SEARCH = "search"
    ITEM_UPSERT = "item_upsert"
    STOCK_CHANGE = "stock_change"
    PRICE_CHANGE = "price_change"


CATALOG_TYPES = frozenset({EventType.ITEM_UPSERT, EventType.STOCK_CHANGE, EventType.PRICE_CHANGE})
ITEM_TYPES = frozenset(
    {
        EventType.VIEW,
        EventType.CLICK,
        EventType.ADD_TO_CART,
        EventType.REMOVE_FROM_CART,
        EventType.PURCHASE,
        EventType.DWELL,
        EventType.STOCK_CHANGE,
        EventType.PRICE_CHANGE,
    }
)

# How strongly each interaction says "this shopper is interested in this item".
INTEREST_WEIGHT: dict[EventType, float] = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.5,
    EventType.DWELL: 0.5,
    EventType.ADD_TO_CART: 3.0,
    EventType.PURCHASE: 5.0,
}


@dataclass(frozen=True, slots=True)
class EventContext:
    device: str | None = None
    country: str | None = None
    referrer: str | None = None
    page: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, at `ts` (epoch seconds, UTC), as the sender says.

    `received_at` is the server's own time of accepting it (the API stamps it; None for
    an event put on the stream by something else): the order of catalog changes, and the
    latest `ts` can mean (see `as_applied`)."""

    event_id: str
    type: EventType
    ts: float
    session_id: str | None = None
    user_id: str | None = None
    item_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    dwell_ms: int | None = None
    query: str | None = None
    context: EventContext = field(default_factory=EventContext)
    list_id: str | None = None
    variant: str | None = None
    position: int | None = None
    item: Item | None = None
    received_at: float | None = None

    @property
    def is_catalog(self) -> bool:
        return self.type in CATALOG_TYPES

    @property
    def subject(self) -> str:
        """Whose list this event changes: the user, else the anonymous session."""
        return subject_key(self.user_id, self.session_id)

    @property
    def partition_key(self) -> str:
        """Stream key: one shopper's events stay ordered; catalog events by item."""
        if self.is_catalog:
            return f"item:{self.item_id}"
        return self.subject

    @property
    def dedup_key(self) -> str:
        """What "the same event" means: its id within its shopper (or, for a catalog event,
        its item), so one shopper's ids can never hide another's events. Ids hold no
        control characters (the codec refuses them), so the separator is unambiguous."""
        return f"{self.partition_key}\x1f{self.event_id}"


@dataclass(frozen=True, slots=True)
class StockChange:
    """An item's availability as of `ts`, a time no client chooses (`order_time`): the
    newest word on an item wins, whoever delivers it first (the API on accepting it, or
    the processor on applying it), and both see the same `ts`."""

    item_id: str
    in_stock: bool
    ts: float


def order_time(event: Event) -> float:
    """When an event counts as said, for "the newest wins": the server's receive time.
    An event that reached the stream without the API (an inventory system producing to
    the catalog topic, trusted with the broker) has none: its own time, which the
    processor has capped at the time the log accepted it (`as_applied`)."""
    return event.received_at if event.received_at is not None else event.ts


def stock_change_of(event: Event) -> StockChange | None:
    """The availability an event states, if it states one (stock levels are absolute)."""
    if event.type is EventType.STOCK_CHANGE and event.item_id and event.quantity is not None:
        return StockChange(event.item_id, event.quantity > 0, order_time(event))
    if event.type is EventType.ITEM_UPSERT and event.item and event.item.stock is not None:
        return StockChange(event.item.item_id, event.item.stock > 0, order_time(event))
    return None


def as_applied(event: Event, logged_at: float) -> Event:
    """The event as live state takes it: it cannot have happened after it was received
    (`received_at`, else `logged_at`, when the stream took it), so a later `ts` is capped
    there. A clock running ahead (within the API's allowed skew) or a producer writing to
    the stream directly then moves no decayed counter, landmark or session into the future.
    Older times stand: they count as old, and move nothing backwards."""
    cap = event.received_at if event.received_at is not None else logged_at
    return event if event.ts <= cap else replace(event, ts=cap)


def subject_key(user_id: str | None, session_id: str | None) -> str:
    """The cache key of a shopper: `u:<user>` when signed in, else `s:<session>`."""
    if user_id:
        return f"u:{user_id}"
    if session_id:
        return f"s:{session_id}"
    return ""
