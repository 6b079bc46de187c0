"""Accepting events: validate each one, publish the good ones, update live stock at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shopper.codec import EventIn, encode_event, parse_event
from shopper.domain.event import CATALOG_TYPES, stock_change_of, subject_key
from shopper.domain.recommendation import RecommendationList
from shopper.errors import InvalidEvent, ShopperError, SpoolFull
from shopper.ports.cache import RecommendationCache
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


class EventIngest:
    """The write side of the API. Bad events are rejected one by one; good ones still go in."""

    def __init__(
        self,
        event_log: EventLog,
        cache: RecommendationCache,
        events_topic: str,
        catalog_topic: str,
        max_batch: int,
    ) -> None:
        self._log = event_log
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
        for index, raw in enumerate(raw_events):
            try:
                good.append(parse_event(raw))
            except InvalidEvent as exc:
                event_id = raw.get("event_id") if isinstance(raw, dict) else None
                result.rejected.append(
                    Rejection(index, str(event_id) if event_id is not None else None, exc.reasons)
                )
        for n, event in enumerate(good):
            topic = self._catalog_topic if event.type in CATALOG_TYPES else self._events_topic
            try:
                self._log.publish(topic, event.to_domain().partition_key, encode_event(event))
            except SpoolFull as exc:
                result.spool_full = str(exc)
                result.not_accepted = [e.event_id for e in good[n:]]
                break
            result.accepted += 1
        self._update_stock(good[: result.accepted])
        return result

    def _update_stock(self, events: list[EventIn]) -> None:
        """The live stock set changes when the event is accepted, not when it is processed:
        the page must stop showing a sold-out item at once. (The processor applies the same
        changes again in stream order; the newest change per item wins either way.)"""
        changes = [c for e in events if (c := stock_change_of(e.to_domain())) is not None]
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
