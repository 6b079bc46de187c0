"""Events: whose list they change and which stream key keeps them in order."""

from __future__ import annotations

import pytest

from shopper.domain.event import Event, EventType, subject_key
from shopper.domain.item import Item
from tests.unit.factories import T0


def event(type: EventType = EventType.VIEW, **fields: str | None) -> Event:
    return Event(event_id="e1", type=type, ts=T0, **fields)  # type: ignore[arg-type]


def test_a_signed_in_shopper_is_their_user() -> None:
    e = event(user_id="42", session_id="s9", item_id="a")
    assert e.subject == "u:42"
    assert e.partition_key == "u:42"


def test_an_anonymous_shopper_is_their_session() -> None:
    e = event(session_id="s9", item_id="a")
    assert e.subject == "s:s9"
    assert e.partition_key == "s:s9"


def test_nobody_has_an_empty_subject() -> None:
    assert subject_key(None, None) == ""
    assert subject_key("", "") == ""


@pytest.mark.parametrize(
    "type", [EventType.ITEM_UPSERT, EventType.STOCK_CHANGE, EventType.PRICE_CHANGE]
)
def test_catalog_events_are_keyed_by_item(type: EventType) -> None:
    e = event(type, item_id="sku-1")
    assert e.is_catalog
    assert e.partition_key == "item:sku-1"


def test_shopper_events_are_not_catalog_events() -> None:
    assert not event(user_id="1", item_id="a").is_catalog


def test_unknown_stock_counts_as_available() -> None:
    assert Item("a").in_stock
    assert Item("a", stock=1).in_stock
    assert not Item("a", stock=0).in_stock
