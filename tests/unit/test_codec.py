"""The wire format: what parse_event accepts, and the reasons it gives when it refuses."""

from __future__ import annotations

import math
from typing import Any

import pytest

from shopper.codec import decode_event, encode_event, parse_event
from shopper.domain.event import EventType
from shopper.errors import InvalidEvent
from tests.unit.factories import T0, wire


def reasons(raw: Any) -> list[str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    assert info.value.reasons, "a rejection must say why"
    return info.value.reasons


def test_canonical_view_with_iso_timestamp() -> None:
    raw = {
        "event_id": "e1",
        "type": "view",
        "ts": "2023-11-14T22:13:20+00:00",
        "user_id": "u1",
        "session_id": "s1",
        "item_id": "sku-1",
        "context": {"device": "mobile", "country": "DE", "referrer": "ads", "page": "/p/1"},
        "list_id": "l1",
        "variant": "champion",
        "position": 3,
    }
    event = parse_event(raw).to_domain()
    assert event.type is EventType.VIEW
    assert event.ts == T0
    assert (event.user_id, event.session_id, event.item_id) == ("u1", "s1", "sku-1")
    assert event.context.country == "DE"
    assert (event.list_id, event.variant, event.position) == ("l1", "champion", 3)


def test_timestamp_offset_is_honoured() -> None:
    event = parse_event(wire("e1", user_id="u", item_id="a") | {"ts": "2023-11-15T00:13:20+02:00"})
    assert event.to_domain().ts == T0


@pytest.mark.parametrize("ts", [1_700_000_000, 1_700_000_000.0])
def test_epoch_seconds_timestamp(ts: float) -> None:
    event = parse_event(wire("e1", user_id="u", item_id="a") | {"ts": ts})
    assert event.to_domain().ts == T0


def test_integer_ids_become_text() -> None:
    raw = {"event_id": 7, "type": "view", "ts": T0, "user_id": 42, "item_id": 1001}
    event = parse_event(raw).to_domain()
    assert (event.event_id, event.user_id, event.item_id) == ("7", "42", "1001")


def test_anonymous_shopper_needs_only_a_session() -> None:
    event = parse_event(wire("e1", session_id="s1", item_id="a")).to_domain()
    assert event.user_id is None
    assert event.subject == "s:s1"


def test_item_upsert_carries_the_item() -> None:
    raw = wire(
        "e1",
        "item_upsert",
        item={"item_id": 5, "title": "Mug", "category": "Home > Kitchen", "price": 4.5, "stock": 0},
    )
    event = parse_event(raw).to_domain()
    assert event.item_id == "5"
    assert event.item is not None
    assert event.item.category == ("Home", "Kitchen")
    assert event.item.stock == 0
    assert not event.item.in_stock


def test_stock_change_to_zero_is_valid() -> None:
    assert parse_event(wire("e1", "stock_change", item_id="a", quantity=0)).quantity == 0


def test_encode_then_decode_is_the_same_event() -> None:
    parsed = parse_event(
        wire("e1", "add_to_cart", user_id="u", item_id="a", quantity=2, context={"device": "ios"})
    )
    assert decode_event(encode_event(parsed)) == parsed.to_domain()


def test_missing_fields_are_each_named() -> None:
    found = reasons({"type": "view"})
    assert any(r.startswith("event_id:") and "required" in r for r in found)
    assert any(r.startswith("ts:") and "required" in r for r in found)


def test_unknown_type_is_named_with_the_allowed_ones() -> None:
    found = reasons(wire("e1", "teleport", user_id="u", item_id="a"))
    assert len(found) == 1
    assert found[0].startswith("type:")
    assert "view" in found[0]


def test_naive_timestamp_is_refused() -> None:
    found = reasons(wire("e1", user_id="u", item_id="a") | {"ts": "2023-11-14T22:13:20"})
    assert found == ["ts: Input should have timezone info"]


@pytest.mark.parametrize("ts", ["yesterday", None, True, [1]])
def test_timestamp_that_is_no_time_is_refused(ts: Any) -> None:
    raw = wire("e1", user_id="u", item_id="a") | {"ts": ts}
    assert any(r.startswith("ts:") for r in reasons(raw))


def test_stock_change_needs_a_quantity() -> None:
    found = reasons(wire("e1", "stock_change", item_id="a"))
    assert len(found) == 1
    assert "stock_change needs 'quantity'" in found[0]


def test_stock_change_to_a_negative_level_is_refused() -> None:
    assert "quantity" in reasons(wire("e1", "stock_change", item_id="a", quantity=-1))[0]


def test_view_needs_an_item() -> None:
    assert "item_id: view needs 'item_id'" in reasons(wire("e1", user_id="u"))[0]


def test_view_needs_a_user_or_a_session() -> None:
    assert "view needs a 'user_id' or a 'session_id'" in reasons(wire("e1", item_id="a"))[0]


def test_unknown_extra_field_is_named() -> None:
    found = reasons(wire("e1", user_id="u", item_id="a", colour="red"))
    assert found == ["colour: Extra inputs are not permitted"]


def test_unknown_context_field_is_named_with_its_path() -> None:
    found = reasons(wire("e1", user_id="u", item_id="a", context={"planet": "mars"}))
    assert found == ["context.planet: Extra inputs are not permitted"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", "cheap"), ("position", -1), ("dwell_ms", -5), ("user_id", ""), ("item_id", 1.5)],
)
def test_wrong_types_and_values_name_the_field(field: str, value: Any) -> None:
    raw = wire("e1", user_id="u", item_id="a") | {field: value}
    assert any(r.startswith(f"{field}:") for r in reasons(raw))


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_numbers_json_cannot_carry_are_refused(number: float) -> None:
    raw = wire("e1", "price_change", item_id="a", price=number)
    assert any(r.startswith("price:") for r in reasons(raw))


def test_boolean_is_not_an_id() -> None:
    assert any(r.startswith("event_id:") for r in reasons(wire("e1") | {"event_id": True}))


def test_item_upsert_needs_an_item() -> None:
    found = reasons(wire("e1", "item_upsert"))
    assert found == ["item: item_upsert needs 'item'"]


def test_item_upsert_names_its_item_only_in_the_item() -> None:
    # One place for the id, so the two can never disagree (and the schema says so).
    raw = wire("e1", "item_upsert", item_id="a", item={"item_id": "b"})
    assert reasons(raw) == ["item_id: Extra inputs are not permitted"]


def test_price_change_needs_a_price() -> None:
    assert "price_change needs 'price'" in reasons(wire("e1", "price_change", item_id="a"))[0]


def test_dwell_needs_dwell_ms() -> None:
    assert "dwell needs 'dwell_ms'" in reasons(wire("e1", "dwell", user_id="u", item_id="a"))[0]


@pytest.mark.parametrize("raw", [None, 5, "view", [], ["event_id"]])
def test_a_value_that_is_no_object_is_refused(raw: Any) -> None:
    assert reasons(raw)


def test_decode_refuses_bytes_that_are_no_event() -> None:
    with pytest.raises(InvalidEvent):
        decode_event(b"{not json")
    with pytest.raises(InvalidEvent):
        decode_event(b'{"event_id": "e1"}')


@pytest.mark.parametrize("ts", ["1700000000", -1, 2e10, True])
def test_a_time_the_schema_does_not_allow_is_refused(ts: Any) -> None:
    # The schema says: an ISO 8601 string, or epoch seconds as a number in [0, 2e10).
    raw = wire("e1", user_id="u", item_id="a") | {"ts": ts}
    assert [r.split(":")[0] for r in reasons(raw)] == ["ts"]


@pytest.mark.parametrize("created_at", [0, 1_700_000_000, "1700000000"])
def test_an_item_listing_time_is_a_date_time_string(created_at: Any) -> None:
    raw = wire("e1", "item_upsert", item={"item_id": "a", "created_at": created_at})
    assert [r.split(":")[0] for r in reasons(raw)] == ["item.created_at"]


@pytest.mark.parametrize(
    ("field", "value"), [("quantity", True), ("quantity", "2"), ("price", "4.5"), ("position", 1.5)]
)
def test_numbers_are_json_numbers(field: str, value: Any) -> None:
    raw = wire("e1", "purchase", user_id="u", item_id="a") | {field: value}
    assert [r.split(":")[0] for r in reasons(raw)] == [field]


def test_an_integral_number_is_the_integer_id() -> None:
    event = parse_event(wire("e1", user_id="u") | {"item_id": 42.0, "position": 3.0})
    assert (event.to_domain().item_id, event.position) == ("42", 3)


@pytest.mark.parametrize("item_id", [2**63, -(2**63) - 1])
def test_an_integer_id_over_64_bits_is_refused(item_id: int) -> None:
    assert [r.split(":")[0] for r in reasons(wire("e1", user_id="u") | {"item_id": item_id})] == [
        "item_id"
    ]
