"""Kafka event log on confluent-kafka: keyed topics, a local spool, consumer groups.

The spool is the producer's buffer in memory (bounded; full: `SpoolFull`, the API's 429)
backed by a disk spool (`disk_spool.py`) for what it could not deliver: records the
broker did not take within `spool_timeout_s`, and whatever is still waiting when the
process stops. Those are sent again, by this process or the next one on that folder,
once the broker is back: an accepted event survives an outage and a restart in it.

Delivery is at least once: a consumer commits only what the processor has written, and a
record that was polled but not committed is read again by whoever owns its partition next.
Effects are made idempotent downstream (by event id), so no transactions are needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopper.adapters.disk_spool import DiskSpool, SpooledRecord
from shopper.errors import ConfigError, MissingExtra, SpoolFull
from shopper.ports.event_log import Record

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_NOT_AVAILABLE,
        Consumer,
        KafkaError,
        KafkaException,
        Message,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("confluent-kafka", "kafka") from exc

log = logging.getLogger(__name__)

DEFAULT_PORT = 9092
_RETRY_MIN_S, _RETRY_MAX_S = 0.25, 2.0  # topic creation while the broker is away
RESEND_EVERY_S = 10.0  # how often the disk spool is looked at for records to send again
_CLOSE_REPORTS_S = 2.0  # at close, how long purged records' reports are waited for
# Commit failures that only mean "your partitions moved": the new owner reads the records
# again from the last commit, and their effects are idempotent.
_LOST_TO_REBALANCE = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
    KafkaError._ASSIGNMENT_LOST,
}


def parse_kafka_url(url: str) -> str:
    """`kafka://host:port[,host:port...]` -> the `bootstrap.servers` string."""
    scheme, sep, rest = url.partition("://")
    hosts = rest.strip("/")
    if scheme != "kafka" or not sep or not hosts:
        raise ConfigError(f"not a Kafka URL: {url!r}; use kafka://host:port[,host:port]")
    servers = []
    for server in hosts.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon:
            host, port = port, str(DEFAULT_PORT)
        if not host or not port.isdigit():
            raise ConfigError(f"bad broker address {server!r} in {url!r}; use host:port")
        servers.append(f"{host}:{port}")
    return ",".join(servers)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How shopper talks to Kafka. The spool is the producer's local buffer: events wait
    there while the broker is away, and publishing fails with SpoolFull once it is full."""

    bootstrap_servers: str
    partitions: int = 4
    replication_factor: int = -1  # the broker's default
    spool_max_events: int = 100_000
    spool_max_kbytes: int = 256 * 1024
    spool_timeout_s: float = 86_400.0  # 0 waits forever
    session_timeout_s: float = 10.0
    client_id: str = "shopper"
    # Where undelivered records wait on disk (None: nowhere, they are lost and counted).
    spool_dir: Path | None = None


class KafkaEventLog:
    """The EventLog port on Kafka. Topics are created (in the background, so a broker that is
    down does not stop the API from starting) with `partitions` partitions."""

    def __init__(self, settings: KafkaSettings, topics: Iterable[str] = ()) -> None:
        self.settings = settings
        self._topics = _TopicCreator(settings)
        self._topics.require(topics)
        self._producer = _producer(settings)
        self._closed = False
        self.failed = 0  # records the broker never took and the disk spool did not keep
        self.spooled = 0  # records the broker never took, kept in the disk spool
        self.resent = 0  # records sent again from the disk spool
        self._disk = (
            DiskSpool(settings.spool_dir, settings.spool_max_kbytes * 1024)
            if settings.spool_dir is not None
            else None
        )
        self._stop = threading.Event()
        self._resender: threading.Thread | None = None
        if self._disk is not None:
            self._resender = threading.Thread(
                target=self._resend_loop, name="shopper-resend", daemon=True
            )
            self._resender.start()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Queue one record in the local spool; it is sent in the background."""
        self._topics.require([topic])
        try:
            self._produce(topic, key, value)
        except BufferError:
            # Serving delivery reports frees the slots of records already delivered.
            self._producer.poll(0)
            try:
                self._produce(topic, key, value)
            except BufferError:
                s = self.settings
                raise SpoolFull(s.spool_max_events, s.spool_max_kbytes) from None
        self._producer.poll(0)

    def flush(self, timeout: float = 5.0) -> int:
        if self._closed:  # what was left went to the disk spool (or was counted failed)
            return 0
        return self._producer.flush(timeout)

    def subscribe(
        self, topics: Sequence[str], group: str, from_start: bool = False
    ) -> KafkaConsumer:
        self._topics.require(topics)
        config = _consumer_config(self.settings, group)
        return KafkaConsumer(self._topics, config, list(topics), from_start)

    def close(self) -> None:
        """Stop without waiting for the broker: records still in the spool go to the disk
        spool (without one they are dropped; call `flush` first)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._resender is not None:
            self._resender.join(10)
        self._topics.close()
        left = self._producer.flush(0)
        if left:
            where = "the disk spool" if self._disk is not None else "nowhere: dropped"
            log.warning(
                "closing the Kafka producer with %d records undelivered: to %s", left, where
            )
            self._producer.purge()
            # Purged records come back through their delivery reports.
            self._producer.flush(_CLOSE_REPORTS_S)
        if self._disk is not None:
            self._disk.close()
        self._producer.close()

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        self._producer.produce(topic, value, key.encode(), on_delivery=self._delivered)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        record = SpooledRecord(msg.topic() or "", msg.key() or b"", msg.value() or b"")
        if self._disk is not None and self._disk.append(record):
            self.spooled += 1
            if self.spooled == 1 or self.spooled % 1000 == 0:
                log.warning(
                    "%d records kept in the disk spool to send again; latest to %s: %s",
                    self.spooled,
                    record.topic,
                    err,
                )
            return
        self.failed += 1
        if self.failed == 1 or self.failed % 1000 == 0:  # a dropped spool fails by the 1000
            log.error("%d records not delivered; latest to %s: %s", self.failed, record.topic, err)

    def _resend_loop(self) -> None:
        """Send the disk spool's records again: at start (what an earlier process left),
        then every `RESEND_EVERY_S` (what this one could not deliver meanwhile)."""
        assert self._disk is not None
        while not self._stop.is_set():
            try:
                self._disk.rotate()
                for path, records in self._disk.take_orphans():
                    if not self._resend(records):
                        break  # the broker is away again: next round
                    self._disk.discard(path)
                    self.resent += len(records)
                    log.info("sent %d records again from %s", len(records), path.name)
            except Exception:
                log.exception("resending the disk spool failed; trying again later")
            self._stop.wait(RESEND_EVERY_S)

    def _resend(self, records: list[SpooledRecord]) -> bool:
        """Publish them and wait until the broker has them all (or give up when stopping)."""
        topics = sorted({r.topic for r in records})
        self._topics.require(topics)
        while not self._topics.wait(topics, 1.0):
            if self._stop.is_set():
                return False
        for record in records:
            while True:
                try:
                    self._produce(record.topic, record.key.decode(errors="replace"), record.value)
                    break
                except BufferError:  # the spool in memory is full: let it drain
                    self._producer.poll(0.1)
                    if self._stop.is_set():
                        return False
        while self._producer.flush(1.0):
            if self._stop.is_set():
                return False
        # A record that failed again went back to the disk spool through its report.
        return True


class KafkaConsumer:
    """One member of a consumer group. Positions advance as `poll` returns records and
    reach the broker only on `commit`; `close` leaves the group without committing."""

    def __init__(
        self,
        topics: _TopicCreator,
        config: dict[str, Any],
        names: list[str],
        from_start: bool = False,
    ) -> None:
        self._topic_creator = topics
        self._names = names
        self._from_start = from_start
        self._consumer = Consumer(config)
        self._subscribed = False
        self._rewind_pending = False
        self._closed = False
        self._positions: dict[tuple[str, int], int] = {}  # polled, not yet committed

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        if not self._subscribed and not self._subscribe(timeout):
            return []
        if self._rewind_pending and not self._try_rewind(timeout):
            return []
        first = self._consumer.poll(max(0.0, deadline - time.monotonic()))
        if first is None:
            return []
        # Then whatever is already fetched, without waiting for more.
        messages = (
            [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        )
        records = [r for m in messages if (r := self._record(m)) is not None]
        for r in records:
            self._positions[(r.topic, r.partition)] = r.offset + 1
        return records

    def commit(self) -> None:
        if not self._positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(exc.args[0])
            return
        for tp in results:
            if tp.error is not None:
                self._commit_failed(tp.error)
        self._positions.clear()

    def rewind(self) -> None:
        """Seek to the committed offsets. If the broker cannot say what they are, `poll`
        returns nothing until it can: records past a failed batch must never be skipped."""
        self._positions.clear()
        self._rewind_pending = True
        self._try_rewind(timeout=10)

    def _try_rewind(self, timeout: float) -> bool:
        assigned = self._consumer.assignment()
        try:
            committed = self._consumer.committed(assigned, timeout=timeout) if assigned else []
        except KafkaException as exc:
            log.warning("cannot read committed offsets (%s); rewinding on the next poll", exc)
            return False
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                # Not fetching yet: it starts from the committed offset anyway.
                if exc.args[0].code() != KafkaError._STATE:
                    raise
        self._rewind_pending = False
        return True

    def close(self) -> None:
        """Leave the group: its other members take over this member's partitions."""
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def _subscribe(self, timeout: float) -> bool:
        # Subscribing before the topics exist would leave them unassigned for minutes.
        if not self._topic_creator.wait(self._names, timeout):
            return False
        self._consumer.subscribe(
            self._names, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        self._subscribed = True
        return True

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _describe(partitions))
        if self._from_start:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            consumer.assign(partitions)

    def _revoked(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked: %s", _describe(partitions))
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)

    def _record(self, msg: Message) -> Record | None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("Kafka consumer: %s", err)
            return None
        kind, millis = msg.timestamp()
        key = msg.key()
        return Record(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=key.decode("utf-8", errors="replace") if key is not None else "",
            value=msg.value() or b"",
            timestamp=time.time() if kind == TIMESTAMP_NOT_AVAILABLE else millis / 1000,
        )

    def _commit_failed(self, err: KafkaError) -> None:
        if err.code() not in _LOST_TO_REBALANCE:
            raise KafkaException(err)
        log.warning("commit lost to a rebalance (%s); the next owner re-reads those records", err)
        self._positions.clear()


def _describe(partitions: list[TopicPartition]) -> str:
    return " ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"


class _TopicCreator:
    """Creates topics on a background thread, retrying while the broker is unreachable."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._wanted: set[str] = set()
        self._ready: set[str] = set()
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="shopper-topics", daemon=True)
        self._thread.start()

    def require(self, topics: Iterable[str]) -> None:
        with self._cond:
            new = set(topics) - self._wanted
            if new:
                self._wanted |= new
                self._cond.notify_all()

    def wait(self, topics: Iterable[str], timeout: float) -> bool:
        names = set(topics)
        with self._cond:
            return self._cond.wait_for(lambda: names <= self._ready or self._closed, timeout) and (
                names <= self._ready
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def _run(self) -> None:
        # Owned by this thread: its connections close when the thread ends.
        admin = AdminClient(_common_config(self._settings))
        backoff = _RETRY_MIN_S
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._wanted - self._ready))
                if self._closed:
                    return
                missing = sorted(self._wanted - self._ready)
            created = self._create(admin, missing)
            with self._cond:
                self._ready |= created
                self._cond.notify_all()
                if created == set(missing):
                    backoff = _RETRY_MIN_S
                else:  # the broker is away, or refused: try again soon
                    self._cond.wait(backoff)
                    backoff = min(backoff * 2, _RETRY_MAX_S)

    def _create(self, admin: AdminClient, names: list[str]) -> set[str]:
        """The topics among `names` that exist now, creating the missing ones. Topics made
        beforehand (say, by operators, without granting shopper the right to create) count."""
        try:
            existing = set(admin.list_topics(timeout=5.0).topics) & set(names)
        except KafkaException as exc:
            log.debug("broker unreachable, topics not created yet: %s", exc)
            return set()
        s = self._settings
        new = [
            NewTopic(n, num_partitions=s.partitions, replication_factor=s.replication_factor)
            for n in names
            if n not in existing
        ]
        if not new:
            return existing
        futures = admin.create_topics(new, request_timeout=5.0, operation_timeout=5.0)
        for name, future in futures.items():
            try:
                future.result()
                existing.add(name)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existing.add(name)
                else:
                    log.warning("cannot create topic %s (retrying): %s", name, exc)
        return existing


def _common_config(s: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        # Reconnect within a second of the broker coming back (the Java client's default).
        "reconnect.backoff.max.ms": 1000,
    }


def _producer(s: KafkaSettings) -> Producer:
    config = {
        **_common_config(s),
        "acks": "all",
        "linger.ms": 5,
        # Same key, same partition as the Java clients, so other producers agree with us.
        "partitioner": "murmur2_random",
        # Without idempotence, one request in flight keeps each key's order across retries.
        "max.in.flight.requests.per.connection": 1,
        "queue.buffering.max.messages": s.spool_max_events,
        "queue.buffering.max.kbytes": s.spool_max_kbytes,
        "message.timeout.ms": int(s.spool_timeout_s * 1000),
        # Topics are created with the configured partitions, never by a stray produce.
        "allow.auto.create.topics": False,
    }
    for codec in ("lz4", "zstd", "gzip"):
        try:
            return Producer({**config, "compression.type": codec})
        except KafkaException:  # this librdkafka was built without the codec
            continue
    return Producer(config)


def _consumer_config(s: KafkaSettings, group: str) -> dict[str, Any]:
    session_ms = int(s.session_timeout_s * 1000)
    return {
        **_common_config(s),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 3),
        # Some Kafka-protocol brokers (tansu) answer a fetch only when its wait is up, which
        # would add up to 500 ms (the default) to every event's freshness. On Kafka this only
        # sets how often an idle consumer asks: 40 small requests a second.
        "fetch.wait.max.ms": 25,
    }
