"""Builders of events and lists, and a driver for the processor, so tests say only what matters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.bootstrap import System
from shopper.codec import parse_event
from shopper.domain.event import CATALOG_TYPES, Event
from shopper.domain.item import Item
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    RecommendationList,
    ScoredItem,
    Source,
)
from shopper.ports.event_log import EventLog
from shopper.ports.processor_state import ProcessorState, StateChanges
from shopper.services.processor import Processor

# Every event of a unit test happens at this instant (ManualClock's default start), so the
# first popularity hit sets the landmark and each view counts exactly its weight, 1.0.
T0 = 1_700_000_000.0


def iso(ts: float = T0) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def wire(
    event_id: str,
    type: str = "view",
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    item_id: str | None = None,
    ts: float = T0,
    **fields: Any,
) -> dict[str, Any]:
    """One event as a shop sends it (JSON-ready); `None` fields are left out."""
    raw: dict[str, Any] = {"event_id": event_id, "type": type, "ts": iso(ts)}
    optional = {"user_id": user_id, "session_id": session_id, "item_id": item_id, **fields}
    raw.update({k: v for k, v in optional.items() if v is not None})
    return raw


def view(event_id: str, user: str, item: str, **fields: Any) -> dict[str, Any]:
    return wire(event_id, "view", user_id=user, item_id=item, **fields)


def sold_out(event_id: str, item: str) -> dict[str, Any]:
    return wire(event_id, "stock_change", item_id=item, quantity=0)


# The items of the unit tests' shops: listed in the catalog by `in_catalog` (only catalog
# items are recommended), and those of `tests.model_factories.interactions`.
SHOP_ITEMS = (*"abcdefgh", *(f"sku-{i}" for i in range(24)))


def in_catalog(state: ProcessorState, *item_ids: str) -> None:
    """Items listed in the processor's catalog, as `item_upsert` events list them, without
    a record on the stream (so record counts stay the test's own)."""
    state.apply(StateChanges(items={i: Item(i) for i in item_ids or SHOP_ITEMS}))


def domain(raw: dict[str, Any]) -> Event:
    return parse_event(raw).to_domain()


def publish(log: EventLog, topic_prefix: str, *raws: dict[str, Any]) -> None:
    """Put events straight on the stream, as the API would, without touching the cache."""
    for raw in raws:
        event = domain(raw)
        topic = "catalog" if event.type in CATALOG_TYPES else "events"
        log.publish(f"{topic_prefix}{topic}", event.partition_key, json.dumps(raw).encode())


def ranked(
    *items: str | tuple[str, float],
    source: Source = Source.PERSONALIZED,
    list_id: str = "list-1",
    generated_at: float = T0,
) -> RecommendationList:
    """A list of items; bare ids get descending scores 1.0, 0.9, ..."""
    scored = tuple(
        ScoredItem(i, round(1.0 - n / 10, 6)) if isinstance(i, str) else ScoredItem(*i)
        for n, i in enumerate(items)
    )
    return RecommendationList(scored, DEFAULT_VARIANT, source, generated_at, list_id)


def popular(segment: str, *items: str) -> RecommendationList:
    return ranked(*items, source=Source.POPULAR, list_id=f"popular:{segment}")


def backlog(system: System) -> int:
    """Records on the event and catalog topics the processor group has not committed."""
    log = system.event_log
    assert isinstance(log, InMemoryEventLog)
    topics = [system.config.events_topic, system.config.catalog_topic]
    return sum(
        end - log.committed(system.config.processor_group, topic, p)
        for topic in topics
        for p, end in enumerate(log.end_offsets(topic))
    )


def drain(system: System, processor: Processor) -> int:
    """Run micro-batches until the group has committed everything; returns records read.
    Stops on the backlog, not on an empty poll, which would wait out the poll timeout."""
    total = 0
    for _ in range(1000):
        if backlog(system) == 0:
            return total
        total += processor.run_once()
    raise AssertionError("the processor does not make progress")
