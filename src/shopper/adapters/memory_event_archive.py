"""In-memory event archive, for tests and the embedded fake."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from shopper.domain.event import Event


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
