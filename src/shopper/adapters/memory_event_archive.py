"""In-memory event archive, for tests and the embedded fake."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from shopper.domain.event import Event

DAY_S = 86_400  # UTC days, as the Parquet archive partitions them


class InMemoryEventArchive:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def flush(self) -> None:
        pass

    def read(self) -> Iterator[Event]:
        with self._lock:
            return iter(list(self._events))

    def read_days(self) -> Iterator[list[Event]]:
        by_day: dict[int, list[Event]] = {}
        for event in self.read():
            by_day.setdefault(int(event.ts // DAY_S), []).append(event)
        return iter([by_day[day] for day in sorted(by_day)])

    def size(self) -> int:
        with self._lock:
            return len(self._events)
