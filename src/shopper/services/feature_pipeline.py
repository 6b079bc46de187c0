"""The feature pipeline: the stream processor's collaborator for the feature store.

For every micro-batch of applied events it archives the events, folds them into the
incremental feature engine, pushes the changed rows to the online store, and reads a
sample back through the online read path, logging what was served for the skew check.
All of it runs on a thread of its own: a slow or failing feature store never holds up
the processor's lists, and the page never touches it.

Where several processor replicas share the feature store (Kafka), a replica's processor
sees only its partitions of the events topic, which is keyed by shopper: enough for the
shoppers' rows, not for items (every shopper's views of an item count) nor for the
category catalog (a shopper's rows read any item's category). So each part is fed by a
stream partitioned by its own entity, as a stream processor repartitions for a join:

- shoppers: the events the processor hands over (`observe`), keyed by shopper;
- items: the item-events topic, where the processors republish item events keyed by
  item, read in one consumer group (`FeatureFeeds.items`): one replica owns an item;
- catalog: every partition of the catalog topic, read by each replica in full.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from shopper.codec import decode_event
from shopper.domain.event import Event, as_applied
from shopper.domain.features.engine import (
    ALL_PARTS,
    CATALOG,
    ITEM,
    USER,
    FeatureEngine,
    Touched,
)
from shopper.domain.features.spec import FeatureRow
from shopper.errors import InvalidEvent
from shopper.ports.event_archive import EventArchive
from shopper.ports.event_log import EventConsumer, Record
from shopper.ports.feature_store import BEFORE_REBUILD, FeatureLog, FeatureStore, ServedRow
from shopper.services.feature_rebuild import RebuildProgress, rebuild_engine
from shopper.services.priority import lower_this_thread

log = logging.getLogger(__name__)

HANDOFF_TIMEOUT_S = 1.0  # how long the processor waits for room in a full queue
COALESCE_BATCHES = 100  # micro-batches handled (and pushed) together at most
ARCHIVE_FLUSH_S = 5.0  # archived events reach Parquet files at least this often
FEED_POLL_S = 0.05  # with feeds, how long the worker waits for a handed-over batch
FEED_MAX_RECORDS = 5000  # records taken from one feed per round at most
PUSHED_KEPT = 500_000  # entities whose last pushed row's event count is remembered


@dataclass(slots=True)
class FeatureStats:
    batches: int = 0
    events: int = 0
    rows_pushed: int = 0
    rows_logged: int = 0
    dropped_batches: int = 0
    errors: int = 0
    item_feed_events: int = 0
    catalog_feed_events: int = 0
    # The start-up rebuild from the archive (see `feature_rebuild`): events folded in,
    # seconds, and whether the state is complete (False: the archive was unreadable).
    rebuild_events: int = 0
    rebuild_s: float = 0.0
    state_complete: bool = False


@dataclass(slots=True)
class FeatureFeeds:
    """The feeds of a pipeline that shares the feature store with other replicas."""

    # The item-events topic in the item-features group (keyed by item), each assigned
    # partition read from its start: a new owner of an item rebuilds its whole history.
    items: EventConsumer
    catalog: EventConsumer  # the catalog topic, every partition (a group of its own)

    def close(self) -> None:
        self.items.close()
        self.catalog.close()


class FeaturePipeline:
    """Archive, engine, online push and served-row log, fed by `observe`."""

    def __init__(
        self,
        archive: EventArchive,
        open_store: Callable[[], FeatureStore],
        served_log: FeatureLog,
        log_sample: float = 0.05,
        max_queued_batches: int = 1000,
        open_feeds: Callable[[], FeatureFeeds] | None = None,
        rebuild_progress: Callable[[], AbstractContextManager[RebuildProgress]] | None = None,
    ) -> None:
        """Without `open_feeds` the pipeline sees every event through `observe` (one
        processor process: the embedded mode); with it, see the module docstring.
        `rebuild_progress` opens the progress display of the start-up rebuild."""
        self.archive = archive
        self.engine = FeatureEngine()
        self.stats = FeatureStats()
        self.open_store = open_store
        self._store: FeatureStore | None = None
        self.served_log = served_log
        self._log_sample = log_sample
        self._queue: queue.Queue[list[Event] | None] = queue.Queue(max_queued_batches)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._unpushed: Touched = set()
        self._pushed: dict[tuple[str, str], tuple[float, int]] = {}  # (kind, entity) -> kept
        # Pushes begun and ended (odd: one under way). A reader that sees the same even
        # number before its reads and after looking the rows' counts up read no row
        # a push changed meanwhile: the counts are those of the rows it read.
        self.pushes = 0
        self._open_feeds = open_feeds
        self._feed_rounds = 0  # rounds of the worker in which the feeds had nothing new
        self._ready = threading.Event()
        self._rebuild_progress = rebuild_progress
        self._incomplete_reason: str | None = None  # set when the rebuild fell short

    def observe(self, events: Sequence[Event]) -> None:
        """Hand over a micro-batch. Waits at most `HANDOFF_TIMEOUT_S` for room; a batch
        that finds none is dropped and counted, never an error for the processor."""
        if not events:
            return
        self._ensure_started()
        try:
            self._queue.put(list(events), timeout=HANDOFF_TIMEOUT_S)
        except queue.Full:
            self.stats.dropped_batches += 1
            log.warning("feature pipeline is behind: dropped a batch of %d events", len(events))

    def pushed(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until every batch handed over has its rows in the
        online store: the learned ranker then reads the features of the events it ranks
        for, as training saw them at that moment. False if the wait timed out."""
        # Woken by the worker's `task_done` for the last batch (no polling: a polling
        # thread would take the GIL from the worker it waits for, every millisecond).
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: not self._queue.unfinished_tasks, timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every batch handed over is processed and archived."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        if self._open_feeds is not None:
            # And until the feeds have had nothing new for two rounds of the worker.
            self._ensure_started()
            seen = self._feed_rounds
            while self._feed_rounds < seen + 2:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
        self.archive.flush()
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Finish the batches handed over (for at most `timeout`), then let go."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):  # a stuck worker: the join times out too
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("feature pipeline did not finish within %.0f s; leaving it", timeout)
            self._thread = None
        self.archive.flush()
        if self._store is not None:
            self._store.close()
            self._store = None

    def start(self, timeout: float | None = None) -> bool:
        """Start the worker and wait (at most `timeout`; None: as long as it takes) until
        it has rebuilt the engine from the archive and opened the feature store. The
        processor is started after this, so no live event is folded into a state that
        lacks the history, and none waits in (or overflows) the hand-over queue while the
        archive is read. Opening Feast is seconds of pure Python (imports), which would
        hold the GIL against the processor's first batches too. True if ready in time."""
        self._ensure_started()
        return self._ready.wait(timeout)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shopper-features", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        lower_this_thread()  # feature work is never on the page's critical path
        self._warm_up()
        try:
            self._connected()
        except Exception:  # the first push tries again
            self.stats.errors += 1
            log.exception("could not open the feature store; retrying on the next push")
        feeds = self._open_feeds() if self._open_feeds is not None else None
        self._ready.set()
        try:
            self._work(feeds)
        finally:
            if feeds is not None:
                feeds.close()

    def _work(self, feeds: FeatureFeeds | None) -> None:
        stop = False
        while not stop:
            batches = self._take(FEED_POLL_S if feeds is not None else None)
            stop = None in batches
            events = [e for batch in batches if batch is not None for e in batch]
            try:
                if feeds is None:
                    if events:
                        self._handle(events, {ALL_PARTS: events})
                else:
                    catalog = self._read(feeds.catalog)
                    items = self._read(feeds.items)
                    self.stats.catalog_feed_events += len(catalog)
                    self.stats.item_feed_events += len(items)
                    if events or catalog or items:
                        # The catalog first: shoppers' rows look categories up in it.
                        self._handle(
                            events,
                            {
                                frozenset({CATALOG}): catalog,
                                frozenset({USER}): events,
                                frozenset({ITEM}): items,
                            },
                        )
                    if not (catalog or items):
                        self._feed_rounds += 1
            except Exception:  # keep going: the next batch may succeed
                self.stats.errors += 1
                log.exception("feature pipeline failed on %d events", len(events))
            finally:
                for _ in batches:
                    self._queue.task_done()

    def _take(self, timeout: float | None) -> list[list[Event] | None]:
        """The next batch and every batch queued behind it (up to a bound): one push for
        all of them costs Feast's per-call overhead once, so a backlog clears quickly.
        With a `timeout`, nothing if no batch comes within it."""
        try:
            batches = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batches) < COALESCE_BATCHES and batches[-1] is not None:
            try:
                batches.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batches

    def _read(self, feed: EventConsumer) -> list[Event]:
        """What a feed has now, decoded. Records the processor could not decode went to
        its dead letters already; here they are only skipped."""
        return [e for r in feed.poll(FEED_MAX_RECORDS, 0) if (e := _decoded(r)) is not None]

    def _warm_up(self) -> None:
        """Rebuild the engine from the archive of earlier runs, so rows computed after a
        restart see the whole history, as the backfill does. Runs before the worker takes
        a handed-over batch (live events wait in the queue until it is done)."""
        show: Callable[[], AbstractContextManager[RebuildProgress | None]] = (
            self._rebuild_progress or (lambda: nullcontext(None))
        )
        with show() as tick:
            result = rebuild_engine(self.engine, self.archive, tick)
        self.stats.rebuild_events = result.events
        self.stats.rebuild_s = round(result.seconds, 3)
        self.stats.state_complete = result.complete
        if not result.complete:
            self.stats.errors += 1
            self._incomplete_reason = f"{BEFORE_REBUILD}: {result.error}"

    def _handle(self, events: list[Event], feeds: dict[frozenset[str], list[Event]]) -> None:
        """Archive `events` (the handed-over ones: each event is handed over by exactly one
        replica), fold each feed into the parts of the engine it feeds, push the rows."""
        if events:
            self.stats.batches += 1
            self.stats.events += len(events)
            # The archive first: it is what training and the backfill stand on.
            self.archive.append(events)
        if time.monotonic() - self._last_flush > ARCHIVE_FLUSH_S:
            self.archive.flush()
            self._last_flush = time.monotonic()
        # Entities whose rows a failed push left behind are pushed again with these.
        touched = set(self._unpushed)
        for parts, fed in feeds.items():
            touched |= self.engine.apply(fed, parts)
        rows = self.engine.rows(touched)
        if not rows:
            return
        self._unpushed = touched
        store = self._connected()
        kept = {e: self.engine.events_kept(*e) for e in touched}
        self.pushes += 1  # odd while a push is under way (see `events_seen`)
        try:
            store.push(rows)
            # What the store now holds, as of which events: read by the learned ranker
            # for the rows it ranks by (the engine may be a batch ahead of the store).
            if len(self._pushed) > PUSHED_KEPT:
                self._pushed.clear()  # bounded: a lost count leaves a mismatch unexplained
            self._pushed.update((e, k) for e, k in kept.items() if k is not None)
        finally:
            self.pushes += 1
        self._unpushed = set()
        self.stats.rows_pushed += len(rows)
        served = self._read_back(store, touched)
        self.served_log.append(served)
        self.stats.rows_logged += len(served)

    def _connected(self) -> FeatureStore:
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def _read_back(self, store: FeatureStore, touched: Touched) -> list[ServedRow]:
        """Read a sample of the entities through the online read path, as a model would
        be given them: the rows that were really served, with the number of events the
        engine computed them from (when the row read is the one it computed)."""
        sampled = sorted(e for e in touched if sampled_entity(e[1], self._log_sample))
        served: list[ServedRow] = []
        for kind, entity in sampled:
            if kind == USER:
                served += [self._served(USER, r) for r in store.read_user(entity).values()]
        items = [entity for kind, entity in sampled if kind == ITEM]
        served += [self._served(ITEM, r) for r in store.read_items(items).values()]
        return served

    def events_seen(self, kind: str, entity: str, as_of: float) -> int | None:
        """How many events the entity's row at `as_of` that this pipeline last pushed was
        computed from (None: another writer's row, or an older one). Read from the
        processor's thread right after it reads the store (with `pushes` unchanged
        around both): the count of the row pushed, not of the engine's state, which may
        be a batch ahead."""
        pushed = self._pushed.get((kind, entity))
        return pushed[1] if pushed is not None and pushed[0] == as_of else None

    def _served(self, kind: str, row: FeatureRow) -> ServedRow:
        kept = self.engine.events_kept(kind, row.entity_id)
        if kept is None or kept[0] != row.as_of:
            return ServedRow(row)  # another writer's row (a replica's), not this engine's
        return ServedRow(row, kept[1], self._incomplete_reason)


def _decoded(record: Record) -> Event | None:
    """A record of a feed, as the processor applied it (`as_applied`: no later than it was
    received), so the rows pushed from it match the archive's events."""
    try:
        return as_applied(decode_event(record.value), record.timestamp)
    except InvalidEvent:
        return None


def sampled_entity(entity_id: str, rate: float) -> bool:
    """A stable pick of about `rate` of all entities (the same ones on every replica)."""
    return zlib.crc32(entity_id.encode()) < rate * 2**32
