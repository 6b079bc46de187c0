"""One entity's events up to a time, as every feature function reads them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from shopper.domain.event import Event
from shopper.domain.session import interest_weight

C = TypeVar("C")
T = TypeVar("T")

# Events are ordered by time, then id, so equal timestamps still have one order everywhere.
EventKey = tuple[float, str]

# (item id, as_of) -> the item's category path as the catalog said at `as_of`, or None.
CategoryLookup = Callable[[str, float], str | None]

SHARES_TOP = 5  # categories kept by the category share features


def event_key(event: Event) -> EventKey:
    return (event.ts, event.event_id)


@dataclass(frozen=True, slots=True)
class Stamped(Generic[T]):
    """A value an event stated, with that event's key: the latest statement wins."""

    key: EventKey
    value: T


def later(a: Stamped[T] | None, b: Stamped[T] | None) -> Stamped[T] | None:
    """The later of two statements (either may be missing)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.key > a.key else a


@dataclass(frozen=True, slots=True)
class Timeline(Generic[C]):
    """An entity's events at or before `as_of`, oldest first, and `carry`: a summary of
    its events too old for any window (see `window.USER_HORIZON`), all older than these."""

    events: tuple[Event, ...]
    as_of: float
    carry: C

    @classmethod
    def of(cls, events: Iterable[Event], as_of: float, carry: C) -> Timeline[C]:
        """The timeline of `events` (any order) as of `as_of`: later events are left out."""
        kept = sorted((e for e in events if e.ts <= as_of), key=event_key)
        return cls(tuple(kept), as_of, carry)


def is_interaction(event: Event) -> bool:
    """An event that shows interest in an item: what the cold-start tier counts."""
    return event.item_id is not None and interest_weight(event) > 0


def encode_shares(weights: Mapping[str, float], top: int = SHARES_TOP) -> str:
    """Weights as shares of their total, the `top` largest, as a compact JSON object
    (largest first, ties by name): `{"home > kitchen":0.75,"toys":0.25}`; `{}` for none."""
    total = sum(weights.values())
    if total <= 0:
        return "{}"
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return json.dumps({name: w / total for name, w in ranked}, separators=(",", ":"))
