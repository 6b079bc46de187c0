"""The `session_context` features: what the shopper is doing in the current session."""

from __future__ import annotations

from shopper.domain.event import Event, EventType
from shopper.domain.features.spec import FeatureValue
from shopper.domain.features.timeline import (
    CategoryLookup,
    encode_shares,
    is_interaction,
)
from shopper.domain.features.user_profile import UserTimeline
from shopper.domain.features.window import SESSION_LOOKBACK
from shopper.domain.session import RECENT_LIMIT, interest_weight


def current_session(t: UserTimeline) -> list[Event]:
    """The events of the latest event's session (same `session_id`, none counting as one
    id) within the session lookback (24 h), oldest first."""
    if not t.events:
        return []
    session_id = t.events[-1].session_id
    return [
        e
        for e in t.events
        if e.session_id == session_id and SESSION_LOOKBACK.contains(e.ts, t.as_of)
    ]


def recent_item_ids(t: UserTimeline) -> tuple[str, ...]:
    """Distinct items interacted with this session, most recent first, at most 20."""
    seen: dict[str, None] = {}
    for e in reversed(current_session(t)):
        if e.item_id is not None and is_interaction(e):
            seen.setdefault(e.item_id, None)
    return tuple(seen)[:RECENT_LIMIT]


def cart_item_ids(t: UserTimeline) -> tuple[str, ...]:
    """Items in the cart: added this session and not removed or bought since; most
    recently added first."""
    cart: dict[str, None] = {}
    for e in current_session(t):
        if e.item_id is None:
            continue
        if e.type is EventType.ADD_TO_CART:
            cart.pop(e.item_id, None)
            cart[e.item_id] = None
        elif e.type in (EventType.REMOVE_FROM_CART, EventType.PURCHASE):
            cart.pop(e.item_id, None)
    return tuple(reversed(cart))


def category_interest(t: UserTimeline, categories: CategoryLookup) -> str:
    """Dwell-weighted shares of interest by category this session: each interaction
    weighs as the ranker weighs it, a dwell by its time on the page (0.5 per 10 s, at most
    1.5); top 5, as JSON."""
    weights: dict[str, float] = {}
    for e in current_session(t):
        if e.item_id is None or not is_interaction(e):
            continue
        category = categories(e.item_id, t.as_of)
        if category:
            weights[category] = weights.get(category, 0.0) + interest_weight(e)
    return encode_shares(weights)


def compute_session_context(t: UserTimeline, categories: CategoryLookup) -> dict[str, FeatureValue]:
    return {
        "recent_item_ids": recent_item_ids(t),
        "cart_item_ids": cart_item_ids(t),
        "category_interest": category_interest(t, categories),
    }
