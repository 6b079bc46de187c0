"""The event stream: partitioned, keyed, with consumer groups and committed offsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    timestamp: float  # epoch seconds at which the log accepted the record


class EventConsumer(Protocol):
    """One member of a consumer group."""

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records, waiting at most `timeout` seconds for the first."""
        ...

    def commit(self) -> None:
        """Commit the offsets of every record `poll` has returned so far."""
        ...

    def rewind(self) -> None:
        """Seek back to the committed offsets: uncommitted records will be polled again."""
        ...

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind per assigned (topic, partition): the partition's end offset less
        this member's position. Partitions whose end or position the log cannot tell yet
        are left out; it never raises (metrics read it between micro-batches)."""
        ...

    def close(self) -> None: ...


class EventLog(Protocol):
    """Append-only topics; one key's records stay in order in one partition."""

    def publish(self, topic: str, key: str, value: bytes, droppable: bool = False) -> None:
        """Queue one record. `droppable`: one the log may refuse (raising `SpoolFull`)
        rather than let it take room the others need; a log with a spool refuses it once
        the spool is half full (the broker is away), keeping the rest for shop events."""
        ...

    def flush(self, timeout: float = 5.0) -> int:
        """Wait for published records to be stored; returns how many are still pending."""
        ...

    def delivery_stats(self) -> dict[str, int]:
        """Counters of published records the log has not stored (yet): `waiting` in
        memory, `kept_on_disk` after the broker did not take them, `sent_again` from
        disk, `lost` (neither delivered nor kept)."""
        ...

    def subscribe(
        self, topics: Sequence[str], group: str, from_start: bool = False
    ) -> EventConsumer:
        """Join `group`; a new member resumes from the group's committed offsets. With
        `from_start`, every partition assigned to the member is read from its first record
        instead: for state rebuilt from the topic itself on each assignment (as a stream
        processor restores a table from its source topic)."""
        ...

    def close(self) -> None: ...
