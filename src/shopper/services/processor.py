"""The stream processor: folds events into state (`state_fold`) and re-ranks dirty
shoppers (`ranking`) in micro-batches."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from shopper.codec import decode_event
from shopper.domain.event import Event
from shopper.domain.features.engine import item_of
from shopper.domain.ranking import top_popular
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList, Source
from shopper.domain.segment import DEFAULT_SEGMENTS, GLOBAL_SEGMENT, SegmentPolicy
from shopper.domain.session import SessionState
from shopper.errors import InvalidEvent, ShopperError
from shopper.ports.cache import RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventConsumer, EventLog, Record
from shopper.ports.feature_store import FeatureSink
from shopper.ports.processor_state import ProcessorState
from shopper.services.metrics import Lag, Metrics
from shopper.services.priority import lower_this_thread
from shopper.services.processor_stats import ProcessorStats
from shopper.services.ranking import RankingSettings, RankingStage
from shopper.services.state_fold import FoldedBatch, StateFold
from shopper.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.1  # how long one poll waits for a first record when the stream is quiet
SIMILAR_REFRESH_S = 6 * 3600.0  # similar lists are rewritten well within the LKG TTL
REPUBLISH_FLUSH_S = 10.0  # how long a batch waits for its republished item events
LIST_CHUNK = 100  # shoppers ranked, then their lists written, at a time


class RepublishFailed(ShopperError):
    """Republished item events were not stored: the batch must not be committed."""


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    dead_letter_topic: str
    list_size: int = 50
    max_events: int = 2000
    wait_s: float = 0.05
    popular_refresh_s: float = 1.0
    transaction_events: int = 10
    # Where item events are republished keyed by item id (for the item features of a
    # feature store shared by several replicas); None: not republished.
    item_events_topic: str | None = None
    segments: SegmentPolicy = DEFAULT_SEGMENTS  # the popularity segments counted


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
        self._segments_seen: set[str] = {GLOBAL_SEGMENT}  # bounded: `SegmentPolicy`
        self._last_popular = 0.0
        self._model_loads = 0
        self._similar_written = time.monotonic()
        self.stats = ProcessorStats()
        self._fold = StateFold(
            state,
            self.stats,
            settings.transaction_events,
            self._ranking.note_price,
            settings.segments,
            self._ranking.catalog,
        )
        self.lag: Lag = {}  # records behind per partition, as of the last micro-batch

    @property
    def ranking(self) -> RankingStage:
        return self._ranking

    def run_once(self) -> int:
        """Poll one micro-batch, apply it, write lists, then commit. Returns records read."""
        records = self._collect()
        if records:
            with collection_paused():
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
        self._republish_items(decoded)
        batch = self._fold.fold(decoded)
        self._observe_features(batch.applied)
        if batch.stock:
            # Stock events may reach the stream without the API (an inventory system
            # producing to the catalog topic): the live stock set must hear of them too.
            self._cache.set_stock(batch.stock)
        if batch.stock_changed:
            # Popular lists are rewritten so they stop carrying sold-out items.
            self._pending_segments.add(GLOBAL_SEGMENT)
        self._segments_seen |= batch.segments
        if batch.listed:
            # Items new to the catalog may rank at once on the behaviour already counted.
            self._pending_segments |= self._segments_seen
        self._pending_segments |= batch.segments
        self._write_lists(batch.dirty, batch.sessions)
        self._count(batch, dead_letters=len(records) - len(decoded))

    def _count(self, batch: FoldedBatch, dead_letters: int) -> None:
        """The micro-batch's tallies, into the stats and the metrics at once."""
        self.stats.duplicates += batch.duplicates
        if self._metrics is not None:
            self._metrics.batch_applied(batch.types, batch.duplicates, dead_letters)

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

    def _write_lists(self, dirty: dict[str, float], sessions: dict[str, SessionState]) -> None:
        """Re-rank every dirty shopper (the ranking stage) and write their lists, LIST_CHUNK
        shoppers at a time, the first to act first: a shopper's list is on the page as
        soon as their chunk is written, not once the whole micro-batch is ranked (a batch
        that gathered a backlog takes that much longer). A failed write is redone from the
        stored state when the batch is redelivered (see `StateFold`)."""
        if not dirty:
            self._ranking.refresh_model()
            return
        subjects = list(dirty)
        for start in range(0, len(subjects), LIST_CHUNK):
            chunk = subjects[start : start + LIST_CHUNK]
            lists = self._ranking.rank([sessions[subject] for subject in chunk])
            self._cache.write_lists(lists)
            # Freshness is a real latency: wall time against the log's accept time,
            # whatever clock the lists are stamped with.
            written = time.time()
            freshness_s = [written - dirty[subject] for subject in chunk]
            self.stats.lists_written += len(lists)
            self.stats.add_freshness(s * 1000 for s in freshness_s)
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
            # Catalog items only (`CatalogFilter`); the trained top-up too.
            live = self._ranking.catalog.popular(segment, size * 2)
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


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Automatic garbage collection held off while the block runs (it resumes after).

    A micro-batch makes and drops objects by the hundred thousand (records, events,
    candidates, lists) in a process that may hold every list and session it wrote (the
    embedded cache and state). With the collector on, that churn sets off full
    collections over all of them: a quarter to a third of the embedded processor's time.
    Paused, the batch's garbage goes by reference counting as it is dropped, and what the
    batch keeps is collected once, after it. The collector is process-wide: a page read
    served meanwhile by the same process makes no reference cycles worth waiting for."""
    if not gc.isenabled():  # someone else holds it off: theirs to resume
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ProcessorRunner:
    """Runs a processor's micro-batch loop on a background thread."""

    def __init__(self, processor: Processor, niceness: int = 0) -> None:
        self.processor = processor
        self._niceness = niceness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shopper-processor", daemon=True)
        self._failures = ThrottledLog(log)  # a dependency down: not a traceback a second

    @property
    def failing(self) -> bool:
        """Whether its last micro-batch failed (it retries from the committed offsets)."""
        return self._failures.failing

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
                if self._failures.failing:
                    self._failures.recovered("processor micro-batches succeed again")
            except Exception:  # keep serving; replay what was not committed
                self._failures.failure(
                    "processor micro-batch failed; retrying from committed offsets"
                )
                self.processor.rewind()
                self._stop.wait(1.0)
