"""A member of a Kafka consumer group, with positions committed only when told."""

from __future__ import annotations

import logging
import time
from typing import Any

from shopper.adapters.kafka_client import KafkaSettings, TopicCreator, common_config
from shopper.errors import MissingExtra
from shopper.ports.event_log import Record
from shopper.throttled_log import ThrottledLog

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_NOT_AVAILABLE,
        Consumer,
        KafkaError,
        KafkaException,
        Message,
        TopicPartition,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("confluent-kafka", "kafka") from exc

log = logging.getLogger(__name__)

# Commit failures that only mean "your partitions moved": the new owner reads the records
# again from the last commit, and their effects are idempotent.
_LOST_TO_REBALANCE = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
    KafkaError._ASSIGNMENT_LOST,
}

# Errors that mean the broker does not know a subscribed topic (any more): a broker that
# came back without its data. The topic creator makes it again; the group's rebalance then
# assigns its partitions, read from the start (nothing committed survives on the broker).
_TOPIC_GONE = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}


class KafkaConsumer:
    """One member of a consumer group. Positions advance as `poll` returns records and
    reach the broker only on `commit`; `close` leaves the group without committing."""

    def __init__(
        self,
        topics: TopicCreator,
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
        self._errors = ThrottledLog(log)

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

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, its high watermark less this member's position. Both
        are local reads (the watermark as of the last fetch): no broker round trip. On the
        tansu test broker the high watermarks are wrong, so this is only meaningful on a
        real Kafka broker."""
        if self._closed or not self._subscribed:
            return {}
        try:
            positions = self._consumer.position(self._consumer.assignment())
            out: dict[tuple[str, int], int] = {}
            for tp in positions:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
                if tp.offset >= 0 and high >= 0:  # both known (not OFFSET_INVALID)
                    out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
            return out
        except (KafkaException, RuntimeError) as exc:
            log.debug("consumer lag unknown: %s", exc)
            return {}

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
            if err.code() in _TOPIC_GONE:
                self._topic_creator.lost(self._names)
            self._errors.failure("Kafka consumer: %s", err, level=logging.WARNING)
            return None
        if self._errors.failing:
            self._errors.recovered("Kafka consumer reading again")
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


def consumer_config(s: KafkaSettings, group: str) -> dict[str, Any]:
    session_ms = int(s.session_timeout_s * 1000)
    return {
        **common_config(s),
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
