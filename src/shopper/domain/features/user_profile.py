"""The `user_profile` features of a shopper (a signed-in user, or an anonymous session)."""

from __future__ import annotations

from dataclasses import dataclass

from shopper.domain.event import Event, EventType
from shopper.domain.features.spec import FeatureValue
from shopper.domain.features.timeline import (
    CategoryLookup,
    Timeline,
    encode_shares,
    is_interaction,
)
from shopper.domain.features.window import WINDOW_7D
from shopper.domain.session import interest_weight


@dataclass(frozen=True, slots=True)
class UserCarry:
    """What a shopper's events older than the horizon still tell: counted, not kept."""

    interactions: int = 0
    last_seen: float | None = None


UserTimeline = Timeline[UserCarry]


def fold_user(carry: UserCarry, event: Event) -> UserCarry:
    """Fold one event that left the horizon into the summary (in any order)."""
    seen = event.ts if carry.last_seen is None else max(carry.last_seen, event.ts)
    return UserCarry(carry.interactions + int(is_interaction(event)), seen)


def session_count_7d(t: UserTimeline) -> int:
    """Distinct session ids among the shopper's events in the last 7 days."""
    return len(
        {e.session_id for e in t.events if e.session_id and WINDOW_7D.contains(e.ts, t.as_of)}
    )


def interaction_count(t: UserTimeline) -> int:
    """Interactions with items ever (views, clicks, carts, purchases, dwells)."""
    return t.carry.interactions + sum(1 for e in t.events if is_interaction(e))


def avg_cart_value(t: UserTimeline) -> float:
    """Mean of price x quantity over the add-to-carts of the last 7 days that state a
    price; 0.0 for none."""
    values = [
        e.price * max(e.quantity or 1, 1)
        for e in t.events
        if e.type is EventType.ADD_TO_CART
        and e.price is not None
        and WINDOW_7D.contains(e.ts, t.as_of)
    ]
    return sum(values) / len(values) if values else 0.0


def category_affinity(t: UserTimeline, categories: CategoryLookup) -> str:
    """Shares of interest by category over the last 7 days (interactions weighted as the
    ranker weighs them), top 5, as JSON; items the catalog gives no category are skipped."""
    weights: dict[str, float] = {}
    for e in t.events:
        if e.item_id is None or not is_interaction(e) or not WINDOW_7D.contains(e.ts, t.as_of):
            continue
        category = categories(e.item_id, t.as_of)
        if category:
            weights[category] = weights.get(category, 0.0) + interest_weight(e)
    return encode_shares(weights)


def last_seen(t: UserTimeline) -> float | None:
    """Epoch seconds of the shopper's latest event."""
    return t.events[-1].ts if t.events else t.carry.last_seen


def compute_user_profile(t: UserTimeline, categories: CategoryLookup) -> dict[str, FeatureValue]:
    return {
        "session_count_7d": session_count_7d(t),
        "interaction_count": interaction_count(t),
        "avg_cart_value": avg_cart_value(t),
        "category_affinity": category_affinity(t, categories),
        "last_seen": last_seen(t),
    }
