"""In-process event log: partitioned topics and consumer groups, as Kafka has them."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence

from shopper.ports.event_log import Record


def partition_for(key: str, partitions: int) -> int:
    """Stable key-to-partition mapping, so one key's records stay in order."""
    return zlib.crc32(key.encode()) % partitions


class InMemoryEventLog:
    """Topics of `partitions` lists of records; group offsets survive a consumer restart."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self._topics: dict[str, list[list[Record]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._members: dict[str, list[InMemoryConsumer]] = {}
        self._cond = threading.Condition()

    def publish(self, topic: str, key: str, value: bytes, droppable: bool = False) -> None:
        with self._cond:
            parts = self._topic(topic)
            p = partition_for(key, self.partitions)
            parts[p].append(Record(topic, p, len(parts[p]), key, value, time.time()))
            self._cond.notify_all()

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
            return [len(p) for p in self._topic(topic)]

    def _topic(self, name: str) -> list[list[Record]]:
        return self._topics.setdefault(name, [[] for _ in range(self.partitions)])

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
            return 0
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
                    part = self._topics[topic][p]
                    take = part[pos : pos + max_records - len(out)]
                    if take:
                        out.extend(take)
                        consumer.positions[(topic, p)] = pos + len(take)
                    if len(out) >= max_records:
                        break
                left = deadline - time.monotonic()
                if out or left <= 0 or consumer.closed:
                    return out
                self._cond.wait(left)

    def _lag(self, consumer: InMemoryConsumer) -> dict[tuple[str, int], int]:
        with self._cond:
            return {
                (topic, p): len(self._topics[topic][p]) - pos
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
