"""Event times a client cannot abuse: bounded against the server's clock on the way in,
capped at the receive time on the way into live state, and never the order of stock."""

from __future__ import annotations

from datetime import UTC, datetime

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.system_clock import ManualClock
from shopper.codec import decode_event
from shopper.domain.event import EventType, as_applied, order_time, stock_change_of
from shopper.services.ingest import EventIngest
from tests.unit.factories import T0, domain, iso, view, wire

SKEW = 300.0
FAR_FUTURE = "9999-12-31T00:00:00+00:00"


def ingest_at(
    clock: ManualClock,
) -> tuple[EventIngest, InMemoryEventLog, InMemoryRecommendationCache]:
    log = InMemoryEventLog()
    cache = InMemoryRecommendationCache(clock, 60, 600)
    return EventIngest(log, cache, "events", "catalog", 100, clock, SKEW), log, cache


def published(log: InMemoryEventLog) -> list[bytes]:
    consumer = log.subscribe(["events", "catalog"], "reader")
    return [r.value for r in consumer.poll(1000, 0)]


def test_an_event_from_beyond_the_skew_is_rejected_with_a_reason_and_its_neighbours_taken() -> None:
    clock = ManualClock(T0)
    ingest, log, _ = ingest_at(clock)
    batch = [
        view("ok-1", "me", "a"),
        view("future", "me", "a") | {"ts": FAR_FUTURE},
        view("edge", "me", "b", ts=T0 + SKEW),  # at the bound: taken
        view("past-it", "me", "b", ts=T0 + SKEW + 1),
        view("old", "me", "c", ts=T0 - 365 * 86400),  # history: taken
    ]
    result = ingest.ingest(batch)
    assert result.accepted == 3
    assert [(r.index, r.event_id) for r in result.rejected] == [(1, "future"), (3, "past-it")]
    reason = result.rejected[0].reasons[0]
    assert reason.startswith("ts:") and "ahead of the server's clock" in reason
    assert "max_event_skew_s" in reason
    assert [decode_event(v).event_id for v in published(log)] == ["ok-1", "edge", "old"]


def test_every_accepted_event_carries_the_servers_receive_time_and_no_client_sets_it() -> None:
    clock = ManualClock(T0)
    ingest, log, _ = ingest_at(clock)
    forged = view("e1", "me", "a") | {"received_at": FAR_FUTURE}
    clock.advance(5)
    result = ingest.ingest([forged, view("e2", "me", "b"), view("e3", "me", "c")])
    assert result.accepted == 2
    assert [(r.event_id, r.reasons[0].split(":")[0]) for r in result.rejected] == [
        ("e1", "received_at")
    ]
    assert [decode_event(v).received_at for v in published(log)] == [T0 + 5, T0 + 5]


def test_a_stock_change_is_ordered_by_receive_time_not_by_its_ts() -> None:
    clock = ManualClock(T0)
    ingest, _, cache = ingest_at(clock)
    # Sold out "from the future" (within the skew), then restocked with an earlier ts.
    ingest.ingest([wire("s1", "stock_change", item_id="x", quantity=0, ts=T0 + SKEW)])
    assert cache.sold_out_among(["x"]) == {"x"}
    clock.advance(1)
    ingest.ingest([wire("s2", "stock_change", item_id="x", quantity=3, ts=T0 - 60)])
    assert cache.sold_out_among(["x"]) == set()


def test_the_order_time_is_the_receive_time_else_the_events_own() -> None:
    stamped = domain(
        wire("s1", "stock_change", item_id="x", quantity=0) | {"received_at": iso(T0 + 7)}
    )
    assert order_time(stamped) == T0 + 7
    change = stock_change_of(stamped)
    assert change is not None and change.ts == T0 + 7
    direct = domain(wire("s2", "stock_change", item_id="x", quantity=0, ts=T0 - 3))
    assert direct.received_at is None
    assert order_time(direct) == T0 - 3


def test_live_state_takes_an_event_no_later_than_it_was_received() -> None:
    future = datetime(9999, 12, 31, tzinfo=UTC).isoformat()
    via_api = domain(view("e1", "me", "a") | {"ts": future, "received_at": iso(T0)})
    assert as_applied(via_api, logged_at=T0 + 50).ts == T0  # the API's stamp
    direct = domain(view("e2", "me", "a") | {"ts": future})
    capped = as_applied(direct, logged_at=T0 + 50)
    assert (capped.ts, capped.type, capped.item_id) == (T0 + 50, EventType.VIEW, "a")
    old = domain(view("e3", "me", "a", ts=T0 - 86400))
    assert as_applied(old, logged_at=T0) is old  # older times stand
