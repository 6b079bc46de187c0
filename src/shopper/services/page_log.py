"""The page path's own numbers, for the dashboard: how long recommendation reads took inside
shopper, and which source served each list."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from shopper.domain.stats import percentile

DEFAULT_CAPACITY = 20_000


class PageLog:
    """Durations of the latest page reads (a bounded deque) and reads counted by source.

    `record` runs on the API's event loop for every read: it appends under a lock and
    nothing more. `summary` (the dashboard's sampler thread) does the sorting."""

    def __init__(
        self,
        window_s: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._reads: deque[tuple[float, float]] = deque(maxlen=capacity)
        self._sources: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, ms: float, source: str) -> None:
        """One page read that took `ms` inside shopper and served a list from `source`."""
        at = self._clock()
        with self._lock:
            self._reads.append((at, ms))
            self._sources[source] += 1

    def summary(self) -> dict[str, Any]:
        """Reads so far (`reads`, and `sources`: by source), and over the last `window_s`
        how many (`window_reads`) and their p50 and p99 in ms (null with none)."""
        cutoff = self._clock() - self.window_s
        with self._lock:
            reads = list(self._reads)
            sources = dict(self._sources)
        # Appended in clock order: the window is a tail of the deque.
        start = bisect.bisect_left(reads, cutoff, key=lambda read: read[0])
        recent = [ms for _, ms in reads[start:]]
        return {
            "reads": sum(sources.values()),
            "sources": sources,
            "window_reads": len(recent),
            "p50_ms": round(percentile(recent, 50), 3) if recent else None,
            "p99_ms": round(percentile(recent, 99), 3) if recent else None,
        }
