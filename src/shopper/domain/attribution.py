"""Attribution: what each shopping session did, for the experiment arm it was shown.

A session belongs to the variant its first impression (a list the API served) was
stamped with; the API stamps every list with the shopper's assigned variant, whichever
list stood in, so every exposure counts for its arm. From then on its clicks on listed
items, add-to-carts, purchases and revenue count for that variant, including what it did
before the first impression was processed (the whole session is the unit: a shopper is
routed, not an event). Sessions never shown a list belong to no variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopper.domain.event import Event, EventType
from shopper.domain.experiment_stats import SessionOutcome


@dataclass(slots=True)
class OutcomeDelta:
    """What one micro-batch adds to a session's outcome (see `SessionOutcome`)."""

    variant: str | None = None  # the first variant an event of the session named
    impressions: int = 0
    clicks: int = 0
    carted: bool = False
    converted: bool = False
    revenue: float = 0.0

    def add(self, other: OutcomeDelta) -> None:
        """Fold a later delta of the same session in (the first named variant stays)."""
        self.variant = self.variant or other.variant
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.carted = self.carted or other.carted
        self.converted = self.converted or other.converted
        self.revenue += other.revenue

    def outcome(self) -> SessionOutcome | None:
        """The session's outcome so far; None while it has been shown no list."""
        if not self.variant:
            return None
        return SessionOutcome(
            self.variant, self.impressions, self.clicks, self.carted, self.converted,
            self.revenue,
        )  # fmt: skip


ATTRIBUTED = frozenset(
    {EventType.IMPRESSION, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE}
)


def session_of(event: Event) -> str:
    """The session an event belongs to: its session id, else its shopper's key."""
    return f"s:{event.session_id}" if event.session_id else event.subject


def fold_outcome(
    deltas: dict[str, OutcomeDelta], event: Event, prices: Mapping[str, float] | None = None
) -> None:
    """Add `event` to its session's delta. `prices`: catalog prices, for a purchase that
    does not state the price it was bought at."""
    if event.type not in ATTRIBUTED:
        return
    delta = deltas.setdefault(session_of(event), OutcomeDelta())
    if delta.variant is None and event.variant:
        delta.variant = event.variant
    if event.type is EventType.IMPRESSION:
        delta.impressions += 1
    elif event.type is EventType.CLICK:
        delta.clicks += 1 if event.list_id else 0  # a click on a listed item
    elif event.type is EventType.ADD_TO_CART:
        delta.carted = True
    else:
        delta.converted = True
        price = event.price
        if price is None and prices is not None and event.item_id is not None:
            price = prices.get(event.item_id)
        delta.revenue += (price or 0.0) * max(event.quantity or 1, 1)
