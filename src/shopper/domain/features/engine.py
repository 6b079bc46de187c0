"""The incremental form: per-entity event logs that feed the feature functions.

Both the stream processor (online) and the backfill (offline) fold events in here and ask
for rows. Each entity keeps only the events its longest window can see; older ones are
folded into a carry summary that the feature functions read for what outlives windows
(lifetime counts, the latest stated price). Which split between kept and carried events
a log has does not change any value, so online and offline rows agree by construction.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shopper.domain.event import ITEM_TYPES, Event, EventType
from shopper.domain.features.product_stats import ItemCarry, compute_product_stats, fold_item
from shopper.domain.features.session_context import compute_session_context
from shopper.domain.features.spec import (
    PRODUCT_STATS,
    SESSION_CONTEXT,
    USER_PROFILE,
    FeatureRow,
)
from shopper.domain.features.timeline import EventKey, Timeline, event_key
from shopper.domain.features.user_profile import UserCarry, compute_user_profile, fold_user
from shopper.domain.features.window import ITEM_HORIZON, USER_HORIZON

C = TypeVar("C")

USER = "user"
ITEM = "item"
CATALOG = "catalog"  # the category paths catalog records state (user rows read them)
ALL_PARTS = frozenset({USER, ITEM, CATALOG})
Touched = set[tuple[str, str]]  # (entity kind, entity id)


@dataclass(slots=True)
class EntityLog(Generic[C]):
    """One entity's recent events, sorted by key, and the carry of the older ones."""

    carry: C
    events: list[Event]
    keys: list[EventKey]

    def add(self, event: Event) -> bool:
        """Insert in order; False if this event is already here."""
        key = event_key(event)
        at = bisect.bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            return False
        self.keys.insert(at, key)
        self.events.insert(at, event)
        return True

    def prune(self, horizon_s: float, fold: Callable[[C, Event], C]) -> None:
        """Fold events at least `horizon_s` older than the latest into the carry. The
        latest event always stays, so `latest` is always known."""
        cut = bisect.bisect_right(self.keys, self.latest - horizon_s, key=lambda k: k[0])
        for event in self.events[:cut]:
            self.carry = fold(self.carry, event)
        del self.events[:cut]
        del self.keys[:cut]

    @property
    def latest(self) -> float:
        return self.keys[-1][0]

    def timeline(self) -> Timeline[C]:
        return Timeline(tuple(self.events), self.latest, self.carry)


class CategoryCatalog:
    """Each item's category path as catalog records stated it, over time."""

    def __init__(self) -> None:
        self._stated: dict[str, list[tuple[EventKey, str]]] = {}

    def add(self, event: Event) -> bool:
        """Record what `event` states; False if it is already recorded (a catalog record
        can be read twice: from the archive at start-up and from the catalog topic)."""
        if event.item is None:
            return False
        entries = self._stated.setdefault(event.item.item_id, [])
        entry = (event_key(event), " > ".join(event.item.category))
        at = bisect.bisect_left(entries, entry)
        if at < len(entries) and entries[at] == entry:
            return False
        entries.insert(at, entry)
        return True

    def lookup(self, item_id: str, as_of: float) -> str | None:
        """The path the latest record at or before `as_of` stated ("" for none)."""
        for key, path in reversed(self._stated.get(item_id, [])):
            if key[0] <= as_of:
                return path
        return None


class FeatureEngine:
    """Folds events in, in any order, and computes rows for entities. An event already
    kept is ignored; callers apply each event once (the processor and the backfill both
    drop duplicates by event id), since a carried one could not be recognised."""

    def __init__(self) -> None:
        self._users: dict[str, EntityLog[UserCarry]] = {}
        self._items: dict[str, EntityLog[ItemCarry]] = {}
        self._shoppers_of: dict[str, set[str]] = {}  # item -> shoppers who touched it
        self.catalog = CategoryCatalog()

    def apply(self, events: Iterable[Event], parts: frozenset[str] = ALL_PARTS) -> Touched:
        """Fold events in; returns the entities whose rows may have changed. `parts` says
        what the events feed: shopper histories (USER), item histories (ITEM), the category
        catalog (CATALOG). With several processor replicas each part has its own feed,
        partitioned by its own entity (see `FeaturePipeline`); the backfill feeds all."""
        touched: Touched = set()
        for event in events:
            if (
                CATALOG in parts
                and event.type is EventType.ITEM_UPSERT
                and event.item is not None
                and self.catalog.add(event)
            ):
                # A catalog record can arrive after shopper events it predates; the rows
                # of shoppers who saw the item are recomputed with the category it gives.
                touched |= self._shoppers_seeing(event.item.item_id, event.ts)
            subject = user_of(event) if USER in parts else None
            # (get, then create: `setdefault` would build a new log for every event)
            if subject is not None:
                log = self._users.get(subject)
                if log is None:
                    log = self._users[subject] = EntityLog(UserCarry(), [], [])
                if log.add(event):
                    touched.add((USER, subject))
                if event.item_id is not None:
                    shoppers = self._shoppers_of.get(event.item_id)
                    if shoppers is None:
                        shoppers = self._shoppers_of[event.item_id] = set()
                    shoppers.add(subject)
            item_id = item_of(event) if ITEM in parts else None
            if item_id is not None:
                item_log = self._items.get(item_id)
                if item_log is None:
                    item_log = self._items[item_id] = EntityLog(ItemCarry(), [], [])
                if item_log.add(event):
                    touched.add((ITEM, item_id))
        for kind, entity in touched:
            if kind == USER:
                self._users[entity].prune(USER_HORIZON.seconds, fold_user)
            else:
                self._items[entity].prune(ITEM_HORIZON.seconds, fold_item)
        return touched

    def events_kept(self, kind: str, entity: str) -> tuple[float, int] | None:
        """(as_of, number of events) of the entity's rows as computed now: the events
        inside its horizon up to its latest one. None for an entity never seen."""
        log = (self._users if kind == USER else self._items).get(entity)
        return (log.latest, len(log.events)) if log is not None else None

    def events_held(self) -> int:
        """Events kept in full over all entities (the rest are folded into carries): the
        engine's memory grows with these, bounded by the horizons."""
        users = sum(len(log.events) for log in self._users.values())
        return users + sum(len(log.events) for log in self._items.values())

    def rows(self, touched: Iterable[tuple[str, str]]) -> list[FeatureRow]:
        """Every view's row for these entities, as of each entity's latest event."""
        out: list[FeatureRow] = []
        for kind, entity in sorted(touched):
            if kind == USER:
                out.extend(self.user_rows(entity))
            else:
                out.append(self.item_row(entity))
        return out

    def user_rows(self, subject: str) -> list[FeatureRow]:
        t = self._users[subject].timeline()
        lookup = self.catalog.lookup
        return [
            FeatureRow(USER_PROFILE.name, subject, t.as_of, compute_user_profile(t, lookup)),
            FeatureRow(SESSION_CONTEXT.name, subject, t.as_of, compute_session_context(t, lookup)),
        ]

    def item_row(self, item_id: str) -> FeatureRow:
        t = self._items[item_id].timeline()
        return FeatureRow(PRODUCT_STATS.name, item_id, t.as_of, compute_product_stats(t))

    def _shoppers_seeing(self, item_id: str, since: float) -> Touched:
        """Shoppers whose kept events include `item_id` and whose rows are as of `since`
        or later (earlier rows cannot see a record stated at `since`)."""
        shoppers = self._shoppers_of.get(item_id, set())
        still = {s for s in shoppers if any(e.item_id == item_id for e in self._users[s].events)}
        self._shoppers_of[item_id] = still
        return {(USER, s) for s in still if self._users[s].latest >= since}


def item_of(event: Event) -> str | None:
    """The item whose history this event belongs to, if any."""
    if event.type is EventType.ITEM_UPSERT:
        return event.item.item_id if event.item is not None else event.item_id
    return event.item_id if event.type in ITEM_TYPES else None


def user_of(event: Event) -> str | None:
    """The shopper whose history this event belongs to, if any."""
    return event.subject if not event.is_catalog and event.subject else None


def unique_in_order(events: Iterable[Event]) -> list[Event]:
    """Events in time order (then id), each event once (the first in time order; the same
    event is the same id from the same shopper, `Event.dedup_key`)."""
    seen: set[str] = set()
    out = []
    for event in sorted(events, key=event_key):
        if event.dedup_key not in seen:
            seen.add(event.dedup_key)
            out.append(event)
    return out
