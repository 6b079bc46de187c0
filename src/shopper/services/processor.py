"""The stream processor: folds events into state and re-ranks dirty shoppers in micro-batches."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from shopper.codec import decode_event
from shopper.domain.attribution import fold_outcome
from shopper.domain.event import Event, EventType, StockChange, stock_change_of, subject_key
from shopper.domain.features.engine import item_of
from shopper.domain.item import Item
from shopper.domain.ranking import top_popular
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList, Source
from shopper.domain.segment import GLOBAL_SEGMENT, popularity_segments
from shopper.domain.session import SessionState
from shopper.errors import InvalidEvent, ShopperError
from shopper.ports.cache import RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventConsumer, EventLog, Record
from shopper.ports.feature_store import FeatureSink
from shopper.ports.processor_state import ProcessorState, StateChanges
from shopper.services.metrics import Lag, Metrics
from shopper.services.priority import lower_this_thread
from shopper.services.processor_stats import ProcessorStats
from shopper.services.ranking import RankingSettings, RankingStage

log = logging.getLogger(__name__)

CO_OCCURRENCE_WINDOW = 5  # an interaction counts together with this many recent items
IDLE_POLL_S = 0.1  # how long one poll waits for a first record when the stream is quiet
SIMILAR_REFRESH_S = 6 * 3600.0  # similar lists are rewritten well within the LKG TTL
REPUBLISH_FLUSH_S = 10.0  # how long a batch waits for its republished item events


class RepublishFailed(ShopperError):
    """Republished item events were not stored: the batch must not be committed."""


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    dead_letter_topic: str
    list_size: int = 50
    max_events: int = 500
    wait_s: float = 0.05
    popular_refresh_s: float = 1.0
    transaction_events: int = 10
    # Where item events are republished keyed by item id (for the item features of a
    # feature store shared by several replicas); None: not republished.
    item_events_topic: str | None = None


@dataclass(slots=True)
class _Batch:
    changes: StateChanges = field(default_factory=StateChanges)
    dirty: dict[str, float] = field(default_factory=dict)  # subject -> earliest accept time
    stock_changed: bool = False
    stock: list[StockChange] = field(default_factory=list)
    segments: set[str] = field(default_factory=set)
    applied: list[Event] = field(default_factory=list)  # for the feature store
    types: Counter[str] = field(default_factory=Counter)  # events applied, by type
    impressions: int = 0  # of the events not yet in a state transaction
    duplicates: int = 0


class Processor:
    """One member of the processor consumer group."""

    def __init__(
        self,
        consumer: EventConsumer,
        event_log: EventLog,
        state: ProcessorState,
        cache: RecommendationCache,
        clock: Clock,
        settings: ProcessorSettings,
        features: FeatureSink | None = None,
        ranking: RankingStage | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._ranking = ranking or RankingStage(
            state, cache, clock, RankingSettings(list_size=settings.list_size)
        )
        self._features = features
        self._log = event_log
        self._state = state
        self._cache = cache
        self._clock = clock
        self._settings = settings
        self._pending_segments: set[str] = {GLOBAL_SEGMENT}
        self._last_popular = 0.0
        self._model_loads = 0
        self._similar_written = time.monotonic()
        self.stats = ProcessorStats()
        self.lag: Lag = {}  # records behind per partition, as of the last micro-batch

    @property
    def ranking(self) -> RankingStage:
        return self._ranking

    def run_once(self) -> int:
        """Poll one micro-batch, apply it, write lists, then commit. Returns records read."""
        records = self._collect()
        if records:
            self._process(records)
        self._refresh_popular()
        if records:
            self._flush_republished()
            # Commit only after the cache writes: a crash before here means redelivery,
            # and the applied-event check makes a redelivered event change nothing.
            self._consumer.commit()
        # Read here, on the processor's own thread: a consumer is not shared with a scrape.
        self.lag = self._consumer.lag()
        return len(records)

    def _collect(self) -> list[Record]:
        """A micro-batch: wait for a first record, then gather more for up to `wait_s`.
        Batching bounds how often re-ranking competes with page reads for the CPU, at the
        cost of `wait_s` of freshness (lists may be seconds stale; a spinner may not)."""
        limit = self._settings.max_events
        records = self._consumer.poll(limit, IDLE_POLL_S)
        deadline = time.monotonic() + self._settings.wait_s
        while records and len(records) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            records.extend(self._consumer.poll(limit - len(records), left))
        return records

    def rewind(self) -> None:
        """Go back to the last committed offsets, so a failed batch is read again."""
        self._consumer.rewind()

    def close(self) -> None:
        self._consumer.close()

    def _process(self, records: list[Record]) -> None:
        self.stats.records += len(records)
        decoded = [(r, e) for r in records if (e := self._decode(r)) is not None]
        done = self._state.applied([e.event_id for _, e in decoded])
        batch = _Batch()
        subjects = {e.subject for _, e in decoded if not (e.is_catalog or _served(e))}
        # A signed-in event's session may have a history of its own, to join the user's.
        subjects |= {
            subject_key(None, e.session_id)
            for _, e in decoded
            if e.user_id and e.session_id and not e.is_catalog
        }
        sessions = self._state.sessions(subjects)
        items = self._state.items({e.item_id for _, e in decoded if e.is_catalog and e.item_id})
        self._republish_items(decoded)
        prices = self._prices_of_purchases(decoded)
        for record, event in decoded:
            if event.event_id in done:
                batch.duplicates += 1
                if not (event.is_catalog or _served(event)):
                    # A redelivery follows a failed batch whose list write may be lost:
                    # re-rank from stored state, which counts nothing twice.
                    batch.dirty.setdefault(event.subject, record.timestamp)
                continue
            done.add(event.event_id)
            batch.changes.event_ids.append(event.event_id)
            fold_outcome(batch.changes.outcomes, event, prices)
            batch.types[event.type.value] += 1
            if _served(event):
                batch.impressions += 1
                # A list served: attribution only. The shopper's list and features stand
                # (nor does the archive keep it: it holds what features are made from).
                continue
            batch.applied.append(event)
            if event.is_catalog:
                self._apply_catalog(event, items, batch)
            else:
                self._sign_in(event, sessions)
                self._apply_shopper(event, sessions[event.subject], batch)
                batch.dirty.setdefault(event.subject, record.timestamp)
                batch.changes.sessions[event.subject] = sessions[event.subject]
            if len(batch.changes.event_ids) >= self._settings.transaction_events:
                self._apply_state(batch)
        self._apply_state(batch)
        self._observe_features(batch.applied)
        if batch.stock:
            # Stock events may reach the stream without the API (an inventory system
            # producing to the catalog topic): the live stock set must hear of them too.
            self._cache.set_stock(batch.stock)
        if batch.stock_changed:
            # Popular lists are rewritten so they stop carrying sold-out items.
            self._pending_segments.add(GLOBAL_SEGMENT)
        self._pending_segments |= batch.segments
        self._write_lists(batch.dirty, sessions)
        self._count(batch, dead_letters=len(records) - len(decoded))

    def _count(self, batch: _Batch, dead_letters: int) -> None:
        """The micro-batch's tallies, into the stats and the metrics at once."""
        self.stats.duplicates += batch.duplicates
        if self._metrics is not None:
            self._metrics.batch_applied(batch.types, batch.duplicates, dead_letters)

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

    def _republish_items(self, decoded: list[tuple[Record, Event]]) -> None:
        """Every item event of the batch, keyed by its item, to the item-events topic.
        Redeliveries are republished too (the feature engine drops an event it has):
        a crash between here and the commit must not lose an item's event."""
        topic = self._settings.item_events_topic
        if topic is None:
            return
        for record, event in decoded:
            item_id = item_of(event)
            if item_id is not None:
                self._log.publish(topic, item_id, record.value)

    def _flush_republished(self) -> None:
        """The offsets are committed only once the republished records are stored."""
        if self._settings.item_events_topic is None:
            return
        pending = self._log.flush(REPUBLISH_FLUSH_S)
        if pending:
            raise RepublishFailed(
                f"{pending} item events not stored in {self._settings.item_events_topic} "
                f"within {REPUBLISH_FLUSH_S:.0f} s; the batch is read again"
            )

    def _observe_features(self, events: list[Event]) -> None:
        """Hand the applied events to the feature store's pipeline, if there is one. Its
        failures are logged, never raised: features must not hold up the lists."""
        if self._features is None or not events:
            return
        try:
            self._features.observe(events)
        except Exception:
            log.exception("feature pipeline refused a batch of %d events", len(events))

    def _apply_state(self, batch: _Batch) -> None:
        """One state transaction: these events' effects and their ids, together. Kept short
        (`transaction_events`), since a Redis transaction blocks the page reads that share
        that Redis while it runs."""
        if batch.changes.event_ids:
            self._state.apply(batch.changes)
            # Impressions first: `applied - impressions` (the shop's own events) is never
            # ahead of what was applied, even to a reader on another thread.
            self.stats.impressions += batch.impressions
            self.stats.applied += len(batch.changes.event_ids)
        batch.changes = StateChanges()
        batch.impressions = 0

    def _decode(self, record: Record) -> Event | None:
        try:
            return decode_event(record.value)
        except InvalidEvent as exc:
            self._dead_letter(record, str(exc))
            return None

    def _dead_letter(self, record: Record, reason: str) -> None:
        self.stats.dead_letters += 1
        letter = {
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "value": record.value.decode("utf-8", errors="replace"),
        }
        self._log.publish(self._settings.dead_letter_topic, record.key, json.dumps(letter).encode())
        log.warning(
            "dead-lettered %s/%d@%d: %s", record.topic, record.partition, record.offset, reason
        )

    def _apply_catalog(self, event: Event, items: dict[str, Item], batch: _Batch) -> None:
        assert event.item_id is not None
        current = items.get(event.item_id, Item(item_id=event.item_id))
        if event.type is EventType.ITEM_UPSERT and event.item is not None:
            updated = event.item
        elif event.type is EventType.STOCK_CHANGE:
            updated = replace(current, stock=event.quantity)
        else:
            updated = replace(current, price=event.price)
            self._ranking.note_price(updated.item_id, current.price, event.price, event.ts)
        items[updated.item_id] = updated
        batch.changes.items[updated.item_id] = updated
        batch.stock_changed = batch.stock_changed or updated.in_stock != current.in_stock
        if (change := stock_change_of(event)) is not None:
            batch.stock.append(change)

    def _sign_in(self, event: Event, sessions: dict[str, SessionState]) -> None:
        """An event with a user and a session first seen together: the anonymous session's
        history, cart and purchases join the user's (once; see `SessionState.join`)."""
        if not (event.user_id and event.session_id):
            return
        anonymous = sessions.get(subject_key(None, event.session_id))
        sessions[event.subject].join(event.session_id, anonymous)

    def _apply_shopper(self, event: Event, session: SessionState, batch: _Batch) -> None:
        before = session.recent_items()[:CO_OCCURRENCE_WINDOW]
        item = session.apply(event)
        if item is None:
            return
        weight = session.recent[-1].weight
        for segment in popularity_segments(session.country, session.device):
            batch.changes.hits.append((segment, item, weight, event.ts))
            batch.segments.add(segment)
        batch.changes.co_occurrences.extend(
            (item, other, weight) for other in before if other != item
        )

    def _write_lists(self, dirty: dict[str, float], sessions: dict[str, SessionState]) -> None:
        """Re-rank every dirty shopper (the ranking stage) and write their lists."""
        if not dirty:
            self._ranking.refresh_model()
            return
        lists = self._ranking.rank([sessions[subject] for subject in dirty])
        self._cache.write_lists(lists)
        # Freshness is a real latency: wall time against the log's accept time, whatever
        # clock the lists are stamped with.
        written = time.time()
        freshness_s = [written - accepted for accepted in dirty.values()]
        self.stats.lists_written += len(lists)
        self.stats.freshness_ms.extend(s * 1000 for s in freshness_s)
        if self._metrics is not None:
            self._metrics.lists_written(Counter(rec.tier for _, rec in lists), freshness_s)

    def _refresh_popular(self) -> None:
        now = self._clock.now()
        self._refresh_model_lists()
        if (
            not self._pending_segments
            or now - self._last_popular < self._settings.popular_refresh_s
        ):
            return
        for segment in sorted(self._pending_segments):
            size = self._settings.list_size
            live = self._state.popular(segment, size * 2)
            popular = self._ranking.with_trained_popularity(segment, live, size * 2)
            unavailable = self._cache.sold_out_among([i for i, _ in popular])
            ranked = top_popular(popular, unavailable, size)
            rec = RecommendationList(
                tuple(ranked), DEFAULT_VARIANT, Source.POPULAR, now, f"popular:{segment}"
            )
            self._cache.write_popular(segment, rec)
        self._pending_segments = set()
        self._last_popular = now

    def _refresh_model_lists(self) -> None:
        """On a new model (or every `SIMILAR_REFRESH_S`, before the cached copies expire):
        its similar items per item, for product pages, written in chunks so each cache
        write stays short; and its trained popularity, which tops up every popular list.
        The load counts as seen only once written: a failed write is tried again."""
        loads = self._ranking.stats.model_loads
        due = time.monotonic() - self._similar_written > SIMILAR_REFRESH_S
        if loads == self._model_loads and not (due and self._ranking.model is not None):
            return
        for chunk in self._ranking.similar_chunks(self._settings.list_size):
            self._cache.write_similar(chunk)
        self._similar_written = time.monotonic()
        if loads != self._model_loads:
            self._model_loads = loads
            self._pending_segments |= {GLOBAL_SEGMENT, *self._ranking.trained_segments()}


class ProcessorRunner:
    """Runs a processor's micro-batch loop on a background thread."""

    def __init__(self, processor: Processor, niceness: int = 0) -> None:
        self.processor = processor
        self._niceness = niceness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shopper-processor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.processor.close()

    def _loop(self) -> None:
        lower_this_thread(self._niceness)
        while not self._stop.is_set():
            try:
                self.processor.run_once()
            except Exception:  # keep serving; replay what was not committed
                log.exception("processor micro-batch failed; retrying from committed offsets")
                self.processor.rewind()
                self._stop.wait(1.0)


def _served(event: Event) -> bool:
    """An impression: the API served this shopper a list."""
    return event.type is EventType.IMPRESSION
