"""The event archive: every accepted event, kept for training and backfills."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from shopper.domain.event import Event


class EventArchive(Protocol):
    def append(self, events: Sequence[Event]) -> None:
        """Add events (they may be buffered until `flush`)."""
        ...

    def flush(self) -> None:
        """Make every appended event durable and readable."""
        ...

    def read(self) -> Iterator[Event]:
        """Every archived event, in no particular order (duplicates possible)."""
        ...

    def read_days(self) -> Iterator[list[Event]]:
        """Every archived event, one UTC day at a time, the days in time order (within a
        day no particular order; duplicates possible): a reader folding the history in
        keeps one day in memory, not the whole archive."""
        ...

    def size(self) -> int:
        """How many events `read` yields (duplicates included), known without reading
        them: the total of a progress bar."""
        ...
