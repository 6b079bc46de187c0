"""In-process event log: partitioned topics and consumer groups, as Kafka has them.

Retention is bounded as a Kafka topic's is: a partition keeps its records for
`retention_s` and at most `max_records` of them, the oldest dropped first. Offsets keep
counting; a consumer whose position fell behind the oldest record kept goes on from that
record (Kafka's `auto.offset.reset=earliest` on an out-of-range offset): the records in
between are gone for it, and its lag counted them until then.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence

from shopper.adapters.memory_expiry import Sweeper
from shopper.ports.event_log import Record

RETENTION_S = 3600.0
MAX_RECORDS = 100_000  # per partition


def partition_for(key: str, partitions: int) -> int:
    """Stable key-to-partition mapping, so one key's records stay in order."""
    return zlib.crc32(key.encode()) % partitions


class _Partition:
    """The records kept, oldest first: `records[head:]`, the first at offset `start`."""

    __slots__ = ("base", "head", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.base = 0  # offset of records[0]
        self.head = 0  # index of the oldest record kept

    @property
    def start(self) -> int:
        return self.base + self.head

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def append(self, topic: str, p: int, key: str, value: bytes, now: float) -> None:
        self.records.append(Record(topic, p, self.end, key, value, now))

    def read(self, position: int, n: int) -> list[Record]:
        at = max(position, self.start) - self.base
        return self.records[at : at + n]

    def trim(self, since: float, max_records: int) -> int:
        """Drop records older than `since` and any past the newest `max_records`; returns
        how many."""
        records = self.records
        was = self.head
        head = max(was, len(records) - max_records)
        while head < len(records) and records[head].timestamp < since:
            head += 1
        self.head = head
        # Drop the references in bulk once half the list is gone (a cut per append would
        # copy the whole list each time), or all of them once nothing is kept.
        if head == len(records) or (head > 1024 and head * 2 > len(records)):
            del records[:head]
            self.base += head
            self.head = 0
        return head - was


class InMemoryEventLog:
    """Topics of `partitions` partitions of records; group offsets survive a consumer
    restart. Each partition keeps `retention_s` of records, `max_records` at most."""

    def __init__(
        self,
        partitions: int = 4,
        retention_s: float = RETENTION_S,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self.partitions = partitions
        self.retention_s = retention_s
        self.max_records = max_records
        self._topics: dict[str, list[_Partition]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._members: dict[str, list[InMemoryConsumer]] = {}
        self._cond = threading.Condition()
        Sweeper.register(self.expire)

    def publish(self, topic: str, key: str, value: bytes, droppable: bool = False) -> None:
        now = time.time()
        with self._cond:
            p = partition_for(key, self.partitions)
            part = self._topic(topic)[p]
            part.append(topic, p, key, value, now)
            part.trim(now - self.retention_s, self.max_records)
            self._cond.notify_all()

    def expire(self) -> int:
        """Drop the records past retention in every partition (the `Sweeper` calls this
        every second, for a log nobody publishes to any more); returns how many."""
        since = time.time() - self.retention_s
        with self._cond:
            return sum(
                part.trim(since, self.max_records)
                for parts in self._topics.values()
                for part in parts
            )

    def start_offsets(self, topic: str) -> list[int]:
        """The offset of the oldest record kept in each partition."""
        with self._cond:
            return [part.start for part in self._topic(topic)]

    def flush(self, timeout: float = 5.0) -> int:
        return 0

    def delivery_stats(self) -> dict[str, int]:
        return {"waiting": 0, "kept_on_disk": 0, "sent_again": 0, "lost": 0}  # stored at once

    def subscribe(
        self, topics: Sequence[str], group: str, from_start: bool = False
    ) -> InMemoryConsumer:
        with self._cond:
            for t in topics:
                self._topic(t)
            consumer = InMemoryConsumer(self, list(topics), group, from_start)
            self._members.setdefault(group, []).append(consumer)
            self._rebalance(group)
            return consumer

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def committed(self, group: str, topic: str, partition: int) -> int:
        with self._cond:
            return self._committed.get((group, topic, partition), 0)

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [part.end for part in self._topic(topic)]

    def _topic(self, name: str) -> list[_Partition]:
        return self._topics.setdefault(name, [_Partition() for _ in range(self.partitions)])

    def _rebalance(self, group: str) -> None:
        members = self._members.get(group, [])
        for i, member in enumerate(members):
            owned = [
                (t, p)
                for t in member.topics
                for p in range(self.partitions)
                if p % len(members) == i
            ]
            member.positions = {tp: self._start(member, tp) for tp in owned}

    def _start(self, member: InMemoryConsumer, tp: tuple[str, int]) -> int:
        if member.from_start:
            return self._topics[tp[0]][tp[1]].start
        return self._committed.get((member.group, *tp), 0)

    def _leave(self, consumer: InMemoryConsumer) -> None:
        with self._cond:
            members = self._members.get(consumer.group, [])
            if consumer in members:
                members.remove(consumer)
                self._rebalance(consumer.group)

    def _poll(self, consumer: InMemoryConsumer, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                out: list[Record] = []
                for (topic, p), pos in consumer.positions.items():
                    take = self._topics[topic][p].read(pos, max_records - len(out))
                    if take:
                        out.extend(take)
                        consumer.positions[(topic, p)] = take[-1].offset + 1
                    if len(out) >= max_records:
                        break
                left = deadline - time.monotonic()
                if out or left <= 0 or consumer.closed:
                    return out
                self._cond.wait(left)

    def _lag(self, consumer: InMemoryConsumer) -> dict[tuple[str, int], int]:
        with self._cond:
            return {
                (topic, p): self._topics[topic][p].end - pos
                for (topic, p), pos in consumer.positions.items()
            }

    def _rewind(self, consumer: InMemoryConsumer) -> None:
        with self._cond:
            for tp in consumer.positions:
                consumer.positions[tp] = self._start(consumer, tp)

    def _commit(self, consumer: InMemoryConsumer) -> None:
        with self._cond:
            for (topic, p), pos in consumer.positions.items():
                self._committed[(consumer.group, topic, p)] = pos


class InMemoryConsumer:
    def __init__(
        self, log: InMemoryEventLog, topics: list[str], group: str, from_start: bool = False
    ) -> None:
        self._log = log
        self.topics = topics
        self.group = group
        self.from_start = from_start
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        return self._log._poll(self, max_records, timeout)

    def commit(self) -> None:
        self._log._commit(self)

    def rewind(self) -> None:
        self._log._rewind(self)

    def lag(self) -> dict[tuple[str, int], int]:
        return {} if self.closed else self._log._lag(self)

    def close(self) -> None:
        """Leave the group without committing: uncommitted records go to the next member."""
        self.closed = True
        self._log._leave(self)
