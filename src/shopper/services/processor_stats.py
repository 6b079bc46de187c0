"""The stream processors' counters, and their sum for `/v1/stats`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shopper.domain.stats import percentile


@dataclass(slots=True)
class ProcessorStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    lists_written: int = 0
    impressions: int = 0  # of the events applied: lists served (attribution only)
    freshness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))


def summarize_stats(all_stats: list[ProcessorStats]) -> dict[str, Any]:
    """Counters summed over processors, freshness percentiles over their recent lists."""
    freshness = [ms for st in all_stats for ms in st.freshness_ms]
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
