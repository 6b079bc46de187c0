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

from shopper.adapters.disk_spool import DiskSpool, SpooledRecord
from shopper.adapters.kafka_client import (
    KafkaSettings,
    TopicCreator,
    common_config,
    parse_kafka_url,
)
from shopper.adapters.kafka_consumer import KafkaConsumer, consumer_config
from shopper.errors import MissingExtra, SpoolFull

try:
    from confluent_kafka import KafkaError, KafkaException, Message, Producer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("confluent-kafka", "kafka") from exc

__all__ = ["KafkaConsumer", "KafkaEventLog", "KafkaSettings", "parse_kafka_url"]

log = logging.getLogger(__name__)

RESEND_EVERY_S = 10.0  # how often the disk spool is looked at for records to send again
STALLED_AFTER_S = 3.0  # records waiting this long with none delivered: not ready
# Delivery errors that mean the broker does not know the topic (any more).
_TOPIC_GONE = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}
_CLOSE_REPORTS_S = 2.0  # at close, how long purged records' reports are waited for


class KafkaEventLog:
    """The EventLog port on Kafka. Topics are created (in the background, so a broker that is
    down does not stop the API from starting) with `partitions` partitions."""

    def __init__(self, settings: KafkaSettings, topics: Iterable[str] = ()) -> None:
        self.settings = settings
        self._topics = TopicCreator(settings)
        self._topics.require(topics)
        self._producer = _producer(settings)
        self._closed = False
        self.failed = 0  # records the broker never took and the disk spool did not keep
        self.spooled = 0  # records the broker never took, kept in the disk spool
        self._counts = threading.Lock()  # reports arrive on whichever thread polls
        self._produced = 0
        self._reported = 0
        self._delivered_at = time.monotonic()  # last record the broker took (or start)
        self._waiting_since: float | None = None  # since when records have been waiting
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

    def publish(self, topic: str, key: str, value: bytes, droppable: bool = False) -> None:
        """Queue one record in the local spool; it is sent in the background."""
        self._topics.require([topic])
        if droppable and len(self._producer) * 2 >= self.settings.spool_max_events:
            s = self.settings
            raise SpoolFull(s.spool_max_events, s.spool_max_kbytes)
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

    def delivery_stats(self) -> dict[str, int]:
        if not self._closed:
            self._producer.poll(0)  # serve waiting reports: nothing may publish for a while
        return {
            # Records produced and not yet reported on (len(producer) would also count
            # the client's own protocol requests, e.g. metadata retries while the broker
            # is away).
            "waiting": 0 if self._closed else self._produced - self._reported,
            "kept_on_disk": self.spooled,
            "sent_again": self.resent,
            "lost": self.failed,
        }

    def readiness(self) -> str | None:
        """None when the stream takes and delivers records; else why not: the broker
        unreachable, a topic missing (being created again), or records waiting with none
        delivered for `STALLED_AFTER_S`."""
        if self._closed:
            return "the stream's producer is closed"
        waiting = self.delivery_stats()["waiting"]
        now = time.monotonic()
        if not waiting:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now
        if missing := self._topics.missing():
            where = "unreachable" if not self._topics.reachable else "without them"
            return f"topics {', '.join(missing)} not on the broker (broker {where})"
        since = max(self._delivered_at, self._waiting_since or now)
        if waiting and now - since > STALLED_AFTER_S:
            return f"{waiting} records waiting, none delivered for {now - since:.0f} s"
        return None

    def subscribe(
        self, topics: Sequence[str], group: str, from_start: bool = False
    ) -> KafkaConsumer:
        self._topics.require(topics)
        config = consumer_config(self.settings, group)
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
        with self._counts:
            self._produced += 1

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        with self._counts:
            self._reported += 1
        if err is None:
            self._delivered_at = time.monotonic()
            return
        if err.code() in _TOPIC_GONE:
            self._topics.lost([msg.topic() or ""])
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


def _producer(s: KafkaSettings) -> Producer:
    config = {
        **common_config(s),
        "acks": "all",
        # Records wait up to 25 ms to leave in batches: with every page publishing an
        # impression, 5 ms cost the API process twice the CPU per record (librdkafka's
        # threads share its core); 25 ms is a small share of the freshness budget.
        "linger.ms": 25,
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
