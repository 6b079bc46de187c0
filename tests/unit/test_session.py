"""SessionState: folding one shopper's events into recent items, cart and dwell."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from shopper.domain.session import RECENT_LIMIT, SessionState
from tests.unit.factories import T0, domain, wire

_ids = itertools.count()


def fold(state: SessionState, type: str, item: str | None, **fields: Any) -> str | None:
    raw = wire(f"e{next(_ids)}", type, user_id="me", item_id=item, **fields)
    return state.apply(domain(raw))


@pytest.fixture
def state() -> SessionState:
    return SessionState(subject="u:me")


def test_a_view_is_remembered_as_recent_interest(state: SessionState) -> None:
    assert fold(state, "view", "a") == "a"
    assert state.recent_items() == ["a"]
    assert state.recent[0].weight == 1.0
    assert state.interactions == 1
    assert state.last_seen == T0


def test_add_to_cart_counts_quantity_and_is_strong_interest(state: SessionState) -> None:
    fold(state, "add_to_cart", "a", quantity=2)
    fold(state, "add_to_cart", "a")
    assert state.cart == {"a": 3}
    assert state.recent[-1].weight > 1.0


def test_remove_from_cart_empties_the_line_and_is_no_interest(state: SessionState) -> None:
    fold(state, "add_to_cart", "a", quantity=2)
    assert fold(state, "remove_from_cart", "a") is None
    assert state.cart == {}
    assert state.interactions == 1


def test_purchase_moves_the_item_from_cart_to_purchased_once(state: SessionState) -> None:
    fold(state, "add_to_cart", "a")
    fold(state, "purchase", "a")
    fold(state, "purchase", "a")
    assert state.cart == {}
    assert state.purchased == ["a"]


def test_dwell_adds_up_and_counts_in_proportion(state: SessionState) -> None:
    fold(state, "dwell", "a", dwell_ms=5_000)
    fold(state, "dwell", "a", dwell_ms=20_000)
    assert state.dwell_ms == {"a": 25_000}
    assert [i.weight for i in state.recent] == pytest.approx([0.25, 1.0])


def test_a_zero_dwell_is_no_interest(state: SessionState) -> None:
    assert fold(state, "dwell", "a", dwell_ms=0) is None
    assert state.recent == []
    assert state.dwell_ms == {"a": 0}


def test_events_without_an_item_only_touch_context(state: SessionState) -> None:
    assert fold(state, "search", None, query="shoes", context={"country": "DE"}) is None
    assert state.recent == []
    assert state.interactions == 0
    assert state.country == "DE"


def test_context_is_sticky_until_the_shopper_says_otherwise(state: SessionState) -> None:
    fold(state, "view", "a", context={"country": "DE", "device": "mobile"})
    fold(state, "view", "b")
    assert (state.country, state.device) == ("DE", "mobile")
    fold(state, "view", "c", context={"device": "desktop"})
    assert (state.country, state.device) == ("DE", "desktop")


def test_last_seen_never_goes_back(state: SessionState) -> None:
    fold(state, "view", "a", ts=T0 + 10)
    fold(state, "view", "b", ts=T0)
    assert state.last_seen == T0 + 10


def test_recent_is_limited_and_keeps_the_newest(state: SessionState) -> None:
    for n in range(RECENT_LIMIT + 5):
        fold(state, "view", f"i{n}")
    assert len(state.recent) == RECENT_LIMIT
    assert state.recent[-1].item_id == f"i{RECENT_LIMIT + 4}"
    assert state.recent[0].item_id == "i5"
    assert state.interactions == RECENT_LIMIT + 5


def test_recent_items_are_distinct_and_newest_first(state: SessionState) -> None:
    for item in ["a", "b", "a", "c"]:
        fold(state, "view", item)
    assert state.recent_items() == ["c", "a", "b"]


def test_dict_round_trip_keeps_everything(state: SessionState) -> None:
    fold(state, "view", "a", context={"country": "DE", "device": "mobile"})
    fold(state, "add_to_cart", "b", quantity=2)
    fold(state, "purchase", "c")
    fold(state, "dwell", "a", dwell_ms=12_000)
    copy = SessionState.from_dict(state.to_dict())
    assert copy == state
    assert copy is not state
    copy.cart["z"] = 1
    assert "z" not in state.cart


def test_dict_form_is_plain_json(state: SessionState) -> None:
    fold(state, "view", "a")
    assert SessionState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
