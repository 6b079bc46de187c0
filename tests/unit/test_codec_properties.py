"""Properties of the wire format, over generated input: any JSON value is an event or a
rejection with reasons (never another exception), whatever is accepted survives the
stream unchanged, and the dedup key never confuses two shoppers' events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopper.codec import decode_event, encode_event, parse_event
from shopper.domain.event import EventType
from shopper.errors import InvalidEvent

SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Text as JSON can carry it, lone surrogates and control characters included.
TEXT = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=None), max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\r\n", "<img src=x onerror=alert(1)>"]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
VALID_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2500, 1, 1), timezones=st.just(UTC)
    ).map(datetime.isoformat),
    st.floats(min_value=0, max_value=1e10),
)
TIMES = st.one_of(VALID_TIMES, JSON)
FIELD_VALUES = {
    "event_id": st.one_of(TEXT, st.integers(), JSON),
    "type": st.one_of(st.sampled_from([t.value for t in EventType]), JSON),
    "ts": TIMES,
    "user_id": st.one_of(TEXT, st.integers()),
    "session_id": st.one_of(TEXT, st.integers()),
    "item_id": st.one_of(TEXT, st.integers(), st.floats(allow_nan=False)),
    "price": st.one_of(st.floats(allow_nan=False), st.integers(), TEXT),
    "quantity": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()),
    "dwell_ms": st.one_of(st.integers(), st.none()),
    "query": TEXT,
    "context": st.one_of(st.fixed_dictionaries({}, optional={"device": TEXT, "page": TEXT}), JSON),
    "list_id": TEXT,
    "variant": TEXT,
    "position": st.integers(),
    "item": st.one_of(
        st.fixed_dictionaries(
            {"item_id": st.one_of(TEXT, st.integers())},
            optional={
                "title": TEXT,
                "category": st.one_of(TEXT, st.lists(TEXT, max_size=3)),
                "stock": st.integers(),
                "attributes": st.dictionaries(TEXT, TEXT, max_size=3),
                "created_at": TIMES,
            },
        ),
        JSON,
    ),
}
# Event-shaped objects: each field present or not, each value plausible or anything.
EVENTS = st.fixed_dictionaries({}, optional=FIELD_VALUES)
ANY_INPUT = st.one_of(JSON, EVENTS)


def _outcome(raw: Any) -> Any:
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        assert exc.reasons and all(isinstance(r, str) and r for r in exc.reasons)
        # The reasons go back in a JSON answer: they must be valid UTF-8 text.
        for reason in exc.reasons:
            reason.encode("utf-8")
        return None


@SETTINGS
@given(ANY_INPUT)
def test_any_json_value_is_an_event_or_a_rejection_with_reasons(raw: Any) -> None:
    _outcome(raw)


@SETTINGS
@given(ANY_INPUT)
def test_whatever_is_accepted_survives_the_stream_unchanged(raw: Any) -> None:
    event = _outcome(raw)
    if event is None:
        return
    record = encode_event(event)  # never fails for an accepted event (UTF-8 text only)
    assert decode_event(record) == event.to_domain()


@SETTINGS
@given(st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_stream_record_decodes_or_is_rejected_with_reasons(record: bytes) -> None:
    try:
        decode_event(record)
    except InvalidEvent as exc:
        assert exc.reasons


IDS = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=8)


@SETTINGS
@given(IDS, IDS, IDS, IDS)
def test_two_events_share_a_dedup_key_only_if_shopper_and_id_agree(
    user_a: str, id_a: str, user_b: str, id_b: str
) -> None:
    def event(user: str, event_id: str) -> Any:
        raw = {"event_id": event_id, "type": "view", "ts": 0, "user_id": user, "item_id": "i"}
        return parse_event(raw).to_domain()

    same_key = event(user_a, id_a).dedup_key == event(user_b, id_b).dedup_key
    assert same_key == ((user_a, id_a) == (user_b, id_b))


VALID_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12)
VALID_IDS = st.one_of(VALID_TEXT.filter(bool), st.integers(-(2**63), 2**63 - 1))
SHOPPER = st.fixed_dictionaries({"user_id": VALID_IDS}, optional={"session_id": VALID_IDS})
NEEDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "view": {"item_id": VALID_IDS},
    "purchase": {"item_id": VALID_IDS, "quantity": st.integers(1, 99)},
    "dwell": {"item_id": VALID_IDS, "dwell_ms": st.integers(0, 10**6)},
    "search": {"query": VALID_TEXT},
    "impression": {"list_id": VALID_TEXT, "variant": VALID_TEXT, "position": st.integers(0, 50)},
    "stock_change": {"item_id": VALID_IDS, "quantity": st.integers(0, 10**6)},
    "price_change": {"item_id": VALID_IDS, "price": st.floats(0, 1e6)},
    "item_upsert": {
        "item": st.fixed_dictionaries(
            {"item_id": VALID_IDS},
            optional={
                "title": VALID_TEXT,
                "category": st.lists(VALID_TEXT.filter(str.strip), max_size=3),
                "stock": st.integers(0, 100),
                "attributes": st.dictionaries(VALID_TEXT, VALID_TEXT, max_size=3),
            },
        )
    },
}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(NEEDS)))
    raw: dict[str, Any] = {"event_id": draw(VALID_IDS), "type": kind, "ts": draw(VALID_TIMES)}
    if kind not in ("stock_change", "price_change", "item_upsert"):
        raw |= draw(SHOPPER)
    return raw | draw(st.fixed_dictionaries(NEEDS[kind]))


@SETTINGS
@given(valid_events())
def test_every_valid_event_round_trips_through_the_stream(raw: dict[str, Any]) -> None:
    event = parse_event(raw)
    assert decode_event(encode_event(event)) == event.to_domain()
    assert parse_event(json.loads(encode_event(event))) == event
