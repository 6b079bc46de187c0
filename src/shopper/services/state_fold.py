"""Folding one micro-batch of events into the processor's state: sessions, catalog,
popularity and co-occurrence counters, experiment outcomes, each event applied once.

The events' effects go to the state in short transactions (`transaction_events` each),
every one with the ids of the events it holds, so a redelivered event changes nothing.
The batch's transactions are sent together, in one round trip, except where a session
comes back: see `ProcessorState.apply_all`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shopper.domain.attribution import fold_outcome
from shopper.domain.event import (
    Event,
    EventType,
    StockChange,
    as_applied,
    stock_change_of,
    subject_key,
)
from shopper.domain.item import Item
from shopper.domain.segment import DEFAULT_SEGMENTS, SegmentPolicy
from shopper.domain.session import SessionState
from shopper.ports.event_log import Record
from shopper.ports.processor_state import ProcessorState, StateChanges
from shopper.services.catalog_filter import CatalogFilter
from shopper.services.processor_stats import ProcessorStats

CO_OCCURRENCE_WINDOW = 5  # an interaction counts together with this many recent items

# (item, price before, price after, when): a price change seen on the stream.
PriceNote = Callable[[str, float | None, float | None, float], None]


@dataclass(slots=True)
class FoldedBatch:
    """One micro-batch being folded into state: what it read, and what it changes."""

    done: set[str]  # event ids applied, before or by this batch
    sessions: dict[str, SessionState]
    items: dict[str, Item]
    prices: dict[str, float]  # catalog prices of items bought without a stated price
    changes: StateChanges = field(default_factory=StateChanges)  # the open transaction
    impressions: int = 0  # of the events in the open transaction
    # Closed transactions not yet sent (with their impressions), and the sessions they hold.
    queued: list[tuple[StateChanges, int]] = field(default_factory=list)
    queued_sessions: set[str] = field(default_factory=set)
    dirty: dict[str, float] = field(default_factory=dict)  # subject -> earliest accept time
    stock_changed: bool = False
    listed: bool = False  # an item new to the catalog: it may now be recommended
    stock: list[StockChange] = field(default_factory=list)
    segments: set[str] = field(default_factory=set)
    # Items of the batch's shoppers (their events', and their sessions' recent ones) the
    # catalog does not list (yet): their counts are kept only for the most recently seen.
    unlisted: set[str] = field(default_factory=set)
    applied: list[Event] = field(default_factory=list)  # for the feature store
    types: Counter[str] = field(default_factory=Counter)  # events applied, by type
    duplicates: int = 0


class StateFold:
    """Folds micro-batches into one processor's state; counts into its stats."""

    def __init__(
        self,
        state: ProcessorState,
        stats: ProcessorStats,
        transaction_events: int,
        note_price: PriceNote,
        segments: SegmentPolicy = DEFAULT_SEGMENTS,
        catalog: CatalogFilter | None = None,
    ) -> None:
        self._state = state
        self._catalog = catalog or CatalogFilter(state)
        self._segments = segments
        self._stats = stats
        self._transaction_events = transaction_events
        self._note_price = note_price

    def fold(self, decoded: list[tuple[Record, Event]]) -> FoldedBatch:
        """Apply the batch's events (those not applied before) to the state, each as of
        no later than it was received (`as_applied`): no sender's clock moves live state
        into the future."""
        decoded = [(record, as_applied(event, record.timestamp)) for record, event in decoded]
        batch = self._read_state(decoded)
        for record, event in decoded:
            self._fold(record, event, batch)
            if len(batch.changes.event_ids) >= self._transaction_events:
                self._close_transaction(batch)
        self._close_transaction(batch)
        self._send_transactions(batch)
        return batch

    def _read_state(self, decoded: list[tuple[Record, Event]]) -> FoldedBatch:
        """What the batch's events need from state, read once for all of them."""
        done = self._state.applied([e.dedup_key for _, e in decoded])
        subjects = {e.subject for _, e in decoded if not (e.is_catalog or _served(e))}
        # A signed-in event's session may have a history of its own, to join the user's.
        subjects |= {
            subject_key(None, e.session_id)
            for _, e in decoded
            if e.user_id and e.session_id and not e.is_catalog
        }
        sessions = self._state.sessions(subjects)
        items = self._state.items({e.item_id for _, e in decoded if e.is_catalog and e.item_id})
        batch = FoldedBatch(done, sessions, items, self._prices_of_purchases(decoded))
        counted = {i for s in sessions.values() for i in s.recent_items()[:CO_OCCURRENCE_WINDOW]}
        counted |= {e.item_id for _, e in decoded if e.item_id and not e.is_catalog}
        batch.unlisted = self._catalog.unknown_among(counted)
        return batch

    def _prices_of_purchases(self, decoded: list[tuple[Record, Event]]) -> dict[str, float]:
        """Catalog prices of the items bought without a stated price (for revenue)."""
        wanted = {
            e.item_id
            for _, e in decoded
            if e.type is EventType.PURCHASE and e.price is None and e.item_id
        }
        if not wanted:
            return {}
        items = self._state.items(wanted)
        return {i: item.price for i, item in items.items() if item.price is not None}

    def _fold(self, record: Record, event: Event, batch: FoldedBatch) -> None:
        """One event into the batch's open transaction (or counted as a redelivery)."""
        if event.dedup_key in batch.done:
            batch.duplicates += 1
            if not (event.is_catalog or _served(event)):
                # A redelivery follows a failed batch whose list write may be lost:
                # re-rank from stored state, which counts nothing twice.
                batch.dirty.setdefault(event.subject, record.timestamp)
            return
        batch.done.add(event.dedup_key)
        batch.changes.event_ids.append(event.dedup_key)
        fold_outcome(batch.changes.outcomes, event, batch.prices)
        batch.types[event.type.value] += 1
        if _served(event):
            batch.impressions += 1
            # A list served: attribution only. The shopper's list and features stand
            # (nor does the archive keep it: it holds what features are made from).
            return
        batch.applied.append(event)
        if event.is_catalog:
            self._apply_catalog(event, batch)
            return
        if event.subject in batch.queued_sessions:
            # Sessions are stored whole: a queued transaction holding this one is sent
            # before it changes again (see `ProcessorState.apply_all`).
            self._send_transactions(batch)
        session = batch.sessions[event.subject]
        _sign_in(event, batch.sessions)
        _apply_shopper(event, session, batch, self._segments)
        batch.dirty.setdefault(event.subject, record.timestamp)
        batch.changes.sessions[event.subject] = session

    def _close_transaction(self, batch: FoldedBatch) -> None:
        """The open transaction is complete: queued, to be sent with the batch's others.
        Each is kept short (`transaction_events`), since a Redis transaction blocks the
        page reads that share that Redis while it runs; sent together, they cost one
        round trip."""
        if batch.changes.event_ids:
            batch.queued.append((batch.changes, batch.impressions))
            batch.queued_sessions.update(batch.changes.sessions)
        batch.changes = StateChanges()
        batch.impressions = 0

    def _send_transactions(self, batch: FoldedBatch) -> None:
        """The queued transactions to the state, in order: each one's effects and event
        ids land together."""
        if not batch.queued:
            return
        self._state.apply_all([changes for changes, _ in batch.queued])
        for changes, impressions in batch.queued:
            # Impressions first: `applied - impressions` (the shop's own events) is never
            # ahead of what was applied, even to a reader on another thread.
            self._stats.impressions += impressions
            self._stats.applied += len(changes.event_ids)
        batch.queued = []
        batch.queued_sessions = set()

    def _apply_catalog(self, event: Event, batch: FoldedBatch) -> None:
        assert event.item_id is not None
        batch.unlisted.discard(event.item_id)
        current = batch.items.get(event.item_id)
        if current is None:
            batch.listed = True
            current = Item(item_id=event.item_id)
        if event.type is EventType.ITEM_UPSERT and event.item is not None:
            updated = event.item
        elif event.type is EventType.STOCK_CHANGE:
            updated = replace(current, stock=event.quantity)
        else:
            updated = replace(current, price=event.price)
            self._note_price(updated.item_id, current.price, event.price, event.ts)
        batch.items[updated.item_id] = updated
        batch.changes.items[updated.item_id] = updated
        batch.stock_changed = batch.stock_changed or updated.in_stock != current.in_stock
        if (change := stock_change_of(event)) is not None:
            batch.stock.append(change)


def _sign_in(event: Event, sessions: dict[str, SessionState]) -> None:
    """An event with a user and a session first seen together: the anonymous session's
    history, cart and purchases join the user's (once; see `SessionState.join`)."""
    if not (event.user_id and event.session_id):
        return
    anonymous = sessions.get(subject_key(None, event.session_id))
    sessions[event.subject].join(event.session_id, anonymous)


def _apply_shopper(
    event: Event, session: SessionState, batch: FoldedBatch, segments: SegmentPolicy
) -> None:
    before = session.recent_items()[:CO_OCCURRENCE_WINDOW]
    item = session.apply(event)
    if item is None:
        return
    weight = session.recent[-1].weight
    for segment in segments.segments(session.country, session.device):
        batch.changes.hits.append((segment, item, weight, event.ts))
        batch.segments.add(segment)
    others = [other for other in before if other != item]
    batch.changes.co_occurrences.extend((item, other, weight) for other in others)
    if batch.unlisted:
        for counted in (*others, item):
            if counted in batch.unlisted:
                batch.changes.unlisted[counted] = None


def _served(event: Event) -> bool:
    """An impression: the API served this shopper a list."""
    return event.type is EventType.IMPRESSION
