"""The stream processors' counters, and their sum for `/v1/stats`."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shopper.domain.stats import percentile


class FloatWindow:
    """The last `size` values, oldest first, as doubles in one array: no float object per
    value, so a burst's values never pin the allocator's memory once they are gone (a
    deque of floats kept an object per value, scattered over every arena of the burst)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._values = array("d")
        self._next = 0  # where the next value goes once the window is full

    def extend(self, values: Iterable[float]) -> None:
        kept = self._values
        for value in values:
            if len(kept) < self._size:
                kept.append(value)
            else:
                kept[self._next] = value
                self._next = (self._next + 1) % self._size

    def values(self) -> list[float]:
        return self._values[self._next :].tolist() + self._values[: self._next].tolist()

    def __len__(self) -> int:
        return len(self._values)


@dataclass(slots=True)
class ProcessorStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    lists_written: int = 0
    impressions: int = 0  # of the events applied: lists served (attribution only)
    freshness_ms: FloatWindow = field(default_factory=lambda: FloatWindow(200_000))
    # The processor's thread writes the freshness window while an API thread reads it
    # (`/v1/stats`): the lock keeps a reader from copying a window half changed.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_freshness(self, values_ms: Iterable[float]) -> None:
        """Lists' freshness (ms), newest last; the oldest fall out of the window."""
        values = list(values_ms)  # computed before the lock is taken
        with self._lock:
            self.freshness_ms.extend(values)

    def freshness_snapshot(self) -> list[float]:
        """A copy of the freshness window, safe to read while the processor writes."""
        with self._lock:
            return self.freshness_ms.values()


def summarize_stats(all_stats: list[ProcessorStats]) -> dict[str, Any]:
    """Counters summed over processors, freshness percentiles over their recent lists."""
    freshness = [ms for st in all_stats for ms in st.freshness_snapshot()]
    out: dict[str, Any] = {
        name: sum(getattr(st, name) for st in all_stats)
        for name in (
            "records",
            "applied",
            "duplicates",
            "dead_letters",
            "lists_written",
            "impressions",
        )
    }
    out["processors"] = len(all_stats)
    out["freshness_p50_ms"] = round(percentile(freshness, 50), 2)
    out["freshness_p99_ms"] = round(percentile(freshness, 99), 2)
    return out
