"""Accepting events: validate each one, publish the good ones, update live stock at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from shopper.codec import EventIn, encode_event, parse_event
from shopper.domain.event import CATALOG_TYPES, stock_change_of, subject_key
from shopper.domain.recommendation import RecommendationList
from shopper.errors import InvalidEvent, ShopperError, SpoolFull
from shopper.ports.cache import RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventLog


class BatchTooLarge(ShopperError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"batch of {size} events is over the limit of {limit}; split it")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    event_id: str | None
    reasons: list[str]


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # Set when the local spool filled up mid-batch: the valid events from the first one
    # the spool refused onwards were not accepted (listed by event id); retry those.
    spool_full: str | None = None
    not_accepted: list[str] = field(default_factory=list)


def _echoed_id(raw: Any) -> str | None:
    """The event id of a rejected event, as the answer can carry it: text or a number,
    printable in UTF-8 (a lone surrogate escaped), cut to 128 characters."""
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    if isinstance(event_id, bool) or not isinstance(event_id, str | int | float):
        return None
    return str(event_id)[:128].encode("utf-8", "backslashreplace").decode("utf-8")


class EventIngest:
    """The write side of the API. Bad events are rejected one by one; good ones still go in."""

    def __init__(
        self,
        event_log: EventLog,
        cache: RecommendationCache,
        events_topic: str,
        catalog_topic: str,
        max_batch: int,
        clock: Clock,
        max_event_skew_s: float = 300.0,
    ) -> None:
        self._log = event_log
        self.clock = clock  # the server's: events are bounded by it and stamped with it
        self._max_skew = max_event_skew_s
        self._cache = cache
        self._events_topic = events_topic
        self._catalog_topic = catalog_topic
        self.max_batch = max_batch
        self.impressions_dropped = 0

    def ingest(self, raw_events: Sequence[Any]) -> IngestResult:
        if len(raw_events) > self.max_batch:
            raise BatchTooLarge(len(raw_events), self.max_batch)
        result = IngestResult()
        good: list[EventIn] = []
        now = self.clock.now()
        received = datetime.fromtimestamp(now, UTC)
        receipt = f',"received_at":"{received.isoformat()}"}}'.encode()
        for index, raw in enumerate(raw_events):
            try:
                good.append(self._in_time(parse_event(raw), received))
            except InvalidEvent as exc:
                result.rejected.append(Rejection(index, _echoed_id(raw), exc.reasons))
        for n, event in enumerate(good):
            topic = self._catalog_topic if event.type in CATALOG_TYPES else self._events_topic
            # Stamped with the receive time as it is encoded: the JSON object gets it as its
            # last field (a copy of the model to set it would cost as much as the encoding).
            stamped = encode_event(event)[:-1] + receipt
            try:
                self._log.publish(topic, event.to_domain().partition_key, stamped)
            except SpoolFull as exc:
                result.spool_full = str(exc)
                result.not_accepted = [e.event_id for e in good[n:]]
                break
            result.accepted += 1
        self._update_stock(good[: result.accepted], now)
        return result

    def _in_time(self, event: EventIn, received: datetime) -> EventIn:
        """The event, unless it claims to come from the future (or states a receive time:
        that is the server's word, stamped on every event accepted). Older events are
        taken: they are history (archive, features) and count as old; stock and price
        order by `received_at`, so they cannot undo a newer change."""
        if event.received_at is not None:
            raise InvalidEvent(["received_at: set by the server when it accepts an event"])
        ahead = (event.ts - received).total_seconds()
        if ahead > self._max_skew:
            raise InvalidEvent(
                [
                    f"ts: {event.ts.isoformat()} is {ahead:.0f} s ahead of the server's clock "
                    f"({received.isoformat()}); at most {self._max_skew:.0f} s is allowed "
                    "(max_event_skew_s): send the time the event happened"
                ]
            )
        return event

    def _update_stock(self, events: list[EventIn], received: float) -> None:
        """The live stock set changes when the event is accepted, not when it is processed:
        the page must stop showing a sold-out item at once. (The processor applies the same
        changes again later; the change received last wins either way, ordered by the
        `received_at` stamped here, which no client sets.)"""
        stated = [
            replace(e.to_domain(), received_at=received) for e in events if e.type in CATALOG_TYPES
        ]
        changes = [c for e in stated if (c := stock_change_of(e)) is not None]
        if changes:
            self._cache.set_stock(changes)

    def record_impression(
        self, user_id: str | None, session_id: str | None, served: RecommendationList
    ) -> None:
        """An `impression` event for a list the API served (attribution, per variant).
        Best effort: it never fails or holds up the page; a dropped one is counted."""
        subject = subject_key(user_id, session_id)
        if not subject:
            return  # nobody to attribute it to
        event = {
            "event_id": f"imp:{os.urandom(16).hex()}",
            "type": "impression",
            "ts": datetime.now(UTC).isoformat(),
            "user_id": user_id,
            "session_id": session_id,
            "list_id": served.list_id or None,
            "variant": served.variant or None,
        }
        body = orjson.dumps({k: v for k, v in event.items() if v is not None})
        try:
            self._log.publish(self._events_topic, subject, body, droppable=True)
        except Exception:  # a full spool or a broken stream: the page answers regardless
            self.impressions_dropped += 1
