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
