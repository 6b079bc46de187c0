"""What a rehearsal measures, and its report. No I/O: the driver feeds these with times
(seconds from the run's start, client clock) and response bodies.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from shopper.domain.stats import percentile

PERSONALIZED = "personalized"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def summary_ms(values_s: list[float]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds (None for no values)."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": _ms(percentile(values_s, 50)),
        "p99_ms": _ms(percentile(values_s, 99)),
        "max_ms": _ms(max(values_s)),
    }


@dataclass
class _Pending:
    sent_at: float | None = None
    accepted_at: float | None = None


class SoldOutWatch:
    """Catches sold-out items on pages.

    The API updates its live stock set before it answers 202, so a page read *started*
    after that answer arrived (plus the profile's grace) must not show the item: each one
    that does counts, with its delay after the accept. A page started before the stock
    event was sent that shows the item counts as seen before the sell-out: the proof that
    the check had something to catch. Pages started in between are left out: the server
    may rightly have read them either side of the change.
    """

    def __init__(self, items: list[str], grace_s: float = 0.0) -> None:
        self.grace_s = grace_s
        self._items = {item: _Pending() for item in items}  # the items that will sell out
        self.served = 0  # (page, item) pairs
        self.pages = 0
        self.items_served: set[str] = set()
        self.worst_delay_s: float | None = None
        self.seen_before = 0  # (page, item) pairs before the stock event was sent
        self.stock_events = 0  # accepted sell-outs

    def sending(self, item: str, at: float) -> None:
        self._items[item].sent_at = at

    def accepted(self, item: str, at: float) -> None:
        self._items[item].accepted_at = at
        self.stock_events += 1

    def failed(self, item: str) -> None:
        """The stock event was not accepted: the item is not sold out as far as anyone
        knows, so it is not watched."""
        del self._items[item]

    def check(self, items: list[str], started_at: float) -> None:
        """One page, started at `started_at`, showed `items`."""
        bad = False
        for item in items:
            pending = self._items.get(item)
            if pending is None:
                continue
            if pending.sent_at is None or started_at < pending.sent_at:
                self.seen_before += 1
            elif pending.accepted_at is not None and started_at >= pending.accepted_at + (
                self.grace_s
            ):
                bad = True
                self.served += 1
                self.items_served.add(item)
                delay = started_at - pending.accepted_at
                self.worst_delay_s = max(delay, self.worst_delay_s or 0.0)
        self.pages += bad

    def report(self) -> dict[str, Any]:
        return {
            "stock_events": self.stock_events,
            "served": self.served,
            "pages": self.pages,
            "items": sorted(self.items_served),
            "worst_delay_ms": None if self.worst_delay_s is None else _ms(self.worst_delay_s),
            "seen_before": self.seen_before,
            "grace_ms": _ms(self.grace_s),
        }


@dataclass
class PageTally:
    """Page reads: latency from the scheduled time to the answer, status, source."""

    latencies_s: list[float] = field(default_factory=list)
    by_phase: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)  # by phase
    errors: Counter[str] = field(default_factory=Counter)  # no answer, by exception name
    server_s: list[float] = field(default_factory=list)  # inside shopper (Server-Timing)

    def answered(self, phase: str, latency_s: float, status: int, source: str | None) -> None:
        self.statuses[status] += 1
        if status != 200:
            return
        self.latencies_s.append(latency_s)
        self.by_phase.setdefault(phase, []).append(latency_s)
        self.sources[source or "?"] += 1
        self.fallbacks[phase] += source != PERSONALIZED

    def failed(self, reason: str) -> None:
        self.errors[reason] += 1

    def server_time(self, header: str | None) -> None:
        """Note the `Server-Timing: app;dur=<ms>` shopper puts on every answer."""
        if header and header.startswith("app;dur="):
            with suppress(ValueError):  # another server's header: nothing to note
                self.server_s.append(float(header.removeprefix("app;dur=")) / 1000)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def fallback_share(self) -> float | None:
        total = sum(self.sources.values())
        return None if not total else round(1 - self.sources[PERSONALIZED] / total, 4)

    def report(self, planned_s: float) -> dict[str, Any]:
        non_200 = {str(s): n for s, n in sorted(self.statuses.items()) if s != 200}
        return {
            "sent": self.sent,
            "ok": self.ok,
            "non_200": non_200,
            "errors": dict(self.errors),
            "per_s": round(self.sent / planned_s, 1) if planned_s > 0 else 0.0,
            **summary_ms(self.latencies_s),
            "server": summary_ms(self.server_s),
            "by_phase": {
                phase: {
                    "pages": len(v),
                    **summary_ms(v),
                    "fallback_share": round(self.fallbacks[phase] / len(v), 4),
                }
                for phase, v in self.by_phase.items()
            },
        }


@dataclass
class EventTally:
    posts: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0  # 422: the rehearsal built a bad event (a bug worth reporting)
    throttled: int = 0  # 429: the server's spool was full; not retried (open loop)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def report(self, planned_s: float) -> dict[str, Any]:
        return {
            "sent": self.sent, "accepted": self.accepted, "rejected": self.rejected,
            "throttled": self.throttled, "posts": self.posts, "errors": dict(self.errors),
            "per_s": round(self.sent / planned_s, 1) if planned_s > 0 else 0.0,
            **summary_ms(self.latencies_s),
        }  # fmt: skip


@dataclass
class FreshnessTally:
    """From an event's 202 to the first read of the shopper's page showing a new list."""

    delays_s: list[float] = field(default_factory=list)
    stale: int = 0  # not updated within the timeout
    failed: int = 0  # the event was not accepted, or a read failed: not a measurement
    page_reads: int = 0

    def report(self, timeout_s: float, poll_s: float) -> dict[str, Any]:
        return {
            "measured": len(self.delays_s) + self.stale,
            "fresh": len(self.delays_s),
            "stale": self.stale,
            "failed": self.failed,
            "timeout_s": timeout_s,
            "poll_ms": _ms(poll_s),
            "page_reads": self.page_reads,
            **summary_ms(self.delays_s),
        }
