"""The feature functions: windows, each feature's meaning, time zones, and that the
incremental engine gives exactly what the functions give over the whole history."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shopper.domain.event import Event, EventType
from shopper.domain.features import product_stats, session_context, user_profile
from shopper.domain.features.engine import FeatureEngine, unique_in_order
from shopper.domain.features.product_stats import ItemCarry
from shopper.domain.features.spec import VIEWS, Dtype
from shopper.domain.features.timeline import Timeline
from shopper.domain.features.user_profile import UserCarry
from shopper.domain.features.window import WINDOW_1H, WINDOW_7D, WINDOW_24H
from shopper.domain.session import SessionState
from shopper.services.feature_backfill import offline_rows
from tests.unit.factories import T0, domain, iso, wire

H = 3600.0
DAY = 86_400.0


def ev(n: int, type: str, ts: float, **fields: Any) -> Event:
    fields.setdefault("user_id", "u1")
    return domain(wire(f"e{n}", type, ts=ts, **fields))


def upsert(n: int, item: str, ts: float, **record: Any) -> Event:
    return domain(wire(f"c{n}", "item_upsert", ts=ts, item={"item_id": item, **record}))


def user_t(events: list[Event], as_of: float) -> Timeline[UserCarry]:
    return Timeline.of(events, as_of, UserCarry())


def item_t(events: list[Event], as_of: float) -> Timeline[ItemCarry]:
    return Timeline.of(events, as_of, ItemCarry())


def no_categories(item: str, as_of: float) -> str | None:
    return None


def test_windows_are_half_open_in_epoch_seconds() -> None:
    for window in (WINDOW_1H, WINDOW_24H, WINDOW_7D):
        assert window.contains(T0, T0)
        assert window.contains(T0 - window.seconds + 1e-3, T0)
        assert not window.contains(T0 - window.seconds, T0)  # exactly one window old: out
        assert not window.contains(T0 + 1e-3, T0)  # the future: out


def test_product_counts_stop_exactly_at_the_window_edge() -> None:
    item = {"item_id": "sku-1"}
    events = [
        ev(1, "view", T0, **item),
        ev(2, "view", T0 + 1800, **item),
        ev(3, "view", T0 + H, **item),
        ev(4, "purchase", T0 + H, **item),
        ev(5, "view", T0 + H + 1, **item),  # after as_of: never counted
    ]
    t = item_t(events, T0 + H)
    assert product_stats.views_1h(t) == 2  # the view at T0 is exactly 1 h old
    assert product_stats.purchases_24h(t) == 1
    assert product_stats.view_to_purchase_rate(t) == 1 / 3
    assert product_stats.views_1h(item_t(events, T0 + H - 1e-3)) == 2


def test_trending_halves_every_hour_within_a_day() -> None:
    item = {"item_id": "sku-1"}
    events = [
        ev(1, "view", T0 - DAY, **item),  # a day old: out of the window
        ev(2, "view", T0 - 2 * H, **item),
        ev(3, "add_to_cart", T0 - H, **item),
        ev(4, "view", T0, **item),
    ]
    assert product_stats.trending_score(item_t(events, T0)) == pytest.approx(
        1.0 * 0.25 + 3.0 * 0.5 + 1.0
    )
    assert product_stats.trending_score(item_t([], T0)) == 0.0
    assert isinstance(product_stats.trending_score(item_t([], T0)), float)


def test_price_stock_and_age_come_from_the_latest_statement() -> None:
    events = [
        ev(1, "view", T0, item_id="sku-1", price=10.0),
        upsert(2, "sku-1", T0 + 10, price=12.0, stock=0, created_at=iso(T0 - 2 * H)),
        domain(wire("c3", "price_change", ts=T0 + 20, item_id="sku-1", price=9.5)),
        upsert(6, "sku-1", T0 + 25, category=["home", "kitchen"]),
        domain(wire("c4", "stock_change", ts=T0 + 30, item_id="sku-1", quantity=4)),
        ev(5, "view", T0 + 40, item_id="sku-1"),  # states no price
    ]
    t = item_t(events, T0 + 40)
    assert product_stats.price(t) == 9.5
    assert product_stats.category(t) == "home > kitchen"
    assert product_stats.category(early := item_t(events, T0 + 15)) == ""
    assert product_stats.in_stock(t) is True
    assert product_stats.age_hours(t) == pytest.approx((40 + 2 * H) / H)
    assert (product_stats.price(early), product_stats.in_stock(early)) == (12.0, False)
    first = item_t(events[:1], T0 + H)
    assert product_stats.age_hours(first) == 1.0  # no listing time: since its first event
    assert product_stats.in_stock(first) is True  # unknown stock counts as in stock
    assert product_stats.price(item_t([ev(9, "view", T0, item_id="x")], T0)) is None


def test_user_profile_windows_and_lifetime_counts() -> None:
    events = [
        ev(1, "view", T0 - WINDOW_7D.seconds, item_id="a", session_id="s0"),  # 7 d old: out
        ev(2, "view", T0 - DAY, item_id="b", session_id="s1"),
        ev(3, "add_to_cart", T0 - H, item_id="b", session_id="s2", price=20.0, quantity=2),
        ev(4, "add_to_cart", T0, item_id="c", session_id="s2", price=10.0),
        ev(5, "search", T0, session_id="s2", query="shoes"),
    ]
    t = user_t(events, T0)
    assert user_profile.session_count_7d(t) == 2
    assert user_profile.interaction_count(t) == 4  # lifetime, not windowed; no search
    assert user_profile.avg_cart_value(t) == (40.0 + 10.0) / 2
    assert user_profile.last_seen(t) == T0
    assert user_profile.avg_cart_value(user_t(events[:2], T0)) == 0.0


def test_interaction_count_is_what_the_processor_counts_for_the_tier() -> None:
    raws = [
        wire("e1", "view", user_id="u1", item_id="a"),
        wire("e2", "impression", user_id="u1"),
        wire("e3", "dwell", user_id="u1", item_id="a", dwell_ms=0),
        wire("e4", "dwell", user_id="u1", item_id="a", dwell_ms=5000),
        wire("e5", "remove_from_cart", user_id="u1", item_id="a"),
        wire("e6", "purchase", user_id="u1", item_id="b"),
    ]
    session = SessionState(subject="u:u1")
    for raw in raws:
        session.apply(domain(raw))
    t = user_t([domain(r) for r in raws], T0)
    assert user_profile.interaction_count(t) == session.interactions == 3


def test_categories_are_looked_up_as_the_catalog_stood_at_as_of() -> None:
    engine = FeatureEngine()
    engine.apply(
        [
            upsert(1, "a", T0 - H, category="home > kitchen"),
            upsert(2, "b", T0 - H, category=["toys"]),
            upsert(3, "b", T0 + H, category=["garden"]),  # later: not known at T0
        ]
    )
    events = [
        ev(1, "view", T0 - 60, item_id="a"),
        ev(2, "add_to_cart", T0, item_id="b"),
        ev(3, "view", T0, item_id="unknown"),
    ]
    affinity = json.loads(user_profile.category_affinity(user_t(events, T0), engine.catalog.lookup))
    assert affinity == {"toys": 0.75, "home > kitchen": 0.25}
    assert list(affinity) == ["toys", "home > kitchen"]  # largest share first
    assert user_profile.category_affinity(user_t(events, T0), no_categories) == "{}"


def test_session_context_follows_the_latest_session() -> None:
    engine = FeatureEngine()
    engine.apply(
        [upsert(1, "a", T0 - DAY, category="shoes"), upsert(2, "b", T0 - DAY, category="hats")]
    )
    events = [
        ev(1, "view", T0 - 600, item_id="z", session_id="old"),
        ev(2, "view", T0 - 300, item_id="a", session_id="now"),
        ev(3, "add_to_cart", T0 - 200, item_id="a", session_id="now"),
        ev(4, "add_to_cart", T0 - 100, item_id="b", session_id="now"),
        ev(5, "remove_from_cart", T0 - 50, item_id="a", session_id="now"),
        ev(6, "dwell", T0, item_id="b", session_id="now", dwell_ms=20_000),
    ]
    t = user_t(events, T0)
    assert session_context.recent_item_ids(t) == ("b", "a")
    assert session_context.cart_item_ids(t) == ("b",)
    # a: view 1 + cart 3; b: cart 3 + dwell of 20 s = 1.0
    interest = json.loads(session_context.category_interest(t, engine.catalog.lookup))
    assert interest == pytest.approx({"shoes": 0.5, "hats": 0.5})
    later = user_t(events, T0 + DAY)  # the session is more than a day old by then
    assert session_context.recent_item_ids(later) == ()


def test_a_time_zone_change_of_the_input_changes_no_feature() -> None:
    """The same instants written in other zones (one of them on another calendar day)."""
    stamps = ["2019-10-01T00:00:00", "2019-10-01T00:59:59.5", "2019-10-08T00:00:00"]

    def events(offset: timedelta) -> list[Event]:
        out = []
        for n, stamp in enumerate(stamps):
            local = datetime.fromisoformat(stamp).replace(tzinfo=UTC).astimezone(timezone(offset))
            raw = wire(f"e{n}", "view", user_id="u1", item_id="a", session_id=f"s{n}")
            out.append(domain({**raw, "ts": local.isoformat()}))
        return out

    utc_rows = _rows(events(timedelta(0)))
    for hours in (5.5, -8, 14):
        assert _rows(events(timedelta(hours=hours))) == utc_rows


def _rows(events: list[Event]) -> list[Any]:
    engine = FeatureEngine()
    return [(r.view, r.as_of, dict(r.values)) for r in engine.rows(engine.apply(events))]


def test_every_view_computes_exactly_its_declared_features() -> None:
    engine = FeatureEngine()
    rows = engine.rows(engine.apply([ev(1, "view", T0, item_id="a", session_id="s")]))
    python_types = {
        Dtype.INT64: int,
        Dtype.FLOAT64: float,
        Dtype.BOOL: bool,
        Dtype.STRING: str,
        Dtype.STRING_LIST: tuple,
    }
    assert {r.view for r in rows} == set(VIEWS)
    for row in rows:
        spec = VIEWS[row.view]
        assert tuple(row.values) == spec.feature_names
        for feature in spec.features:
            value = row.values[feature.name]
            assert type(value) is python_types[feature.dtype] or (
                feature.nullable and value is None
            )


# The incremental form against the definition: random shops, events arriving in random
# micro-batches and out of order, histories long enough that old events leave the window.


def random_events(rng: random.Random, n: int) -> list[Event]:
    items = [f"i{k}" for k in range(6)]
    out: list[Event] = []
    for k, item in enumerate(items):
        record = {"category": rng.choice(["a", "b > c", ""]), "price": rng.choice([None, 5.0])}
        if rng.random() < 0.5:
            record["stock"] = rng.choice([0, 3])
        out.append(upsert(k, item, T0 + rng.uniform(-DAY, 10 * DAY), **record))
    types = ["view", "view", "click", "add_to_cart", "remove_from_cart", "purchase", "dwell"]
    for k in range(n):
        type_ = rng.choice([*types, "search", "stock_change", "price_change"])
        ts = T0 + round(rng.uniform(0, 12 * DAY), rng.choice([0, 3]))
        fields: dict[str, Any] = {"item_id": rng.choice(items)}
        if type_ == "stock_change":
            fields["quantity"] = rng.choice([0, 2])
        elif type_ == "price_change":
            fields["price"] = round(rng.uniform(1, 50), 2)
        else:
            fields["user_id"] = rng.choice(["u1", "u2", None])
            fields["session_id"] = rng.choice(["s1", "s2", "s3"])
            if rng.random() < 0.5:
                fields["price"] = round(rng.uniform(1, 50), 2)
            if type_ == "dwell":
                fields["dwell_ms"] = rng.randrange(0, 40_000)
            if type_ == "search":
                fields.pop("item_id")
        out.append(domain(wire(f"r{k}", type_, ts=ts, **fields)))
    return out


def direct_rows(events: list[Event]) -> dict[tuple[str, str], tuple[float, dict[str, Any]]]:
    """Each view's row per entity by calling the feature functions over the whole history."""
    catalog = FeatureEngine()
    catalog.apply(e for e in events if e.type is EventType.ITEM_UPSERT)
    lookup = catalog.catalog.lookup
    out: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    subjects = {e.subject for e in events if not e.is_catalog and e.subject}
    for subject in subjects:
        mine = [e for e in events if not e.is_catalog and e.subject == subject]
        t = user_t(mine, max(e.ts for e in mine))
        out[("user_profile", subject)] = (t.as_of, user_profile.compute_user_profile(t, lookup))
        context = session_context.compute_session_context(t, lookup)
        out[("session_context", subject)] = (t.as_of, context)
    for item in {e.item_id or (e.item.item_id if e.item else None) for e in events} - {None}:
        mine = [e for e in events if _belongs_to_item(e, str(item))]
        t = item_t(mine, max(e.ts for e in mine))
        out[("product_stats", str(item))] = (t.as_of, product_stats.compute_product_stats(t))
    return out


def _belongs_to_item(event: Event, item: str) -> bool:
    if event.type is EventType.ITEM_UPSERT:
        return event.item is not None and event.item.item_id == item
    return event.item_id == item and event.type not in (EventType.SEARCH, EventType.IMPRESSION)


@pytest.mark.parametrize("seed", range(8))
def test_the_incremental_engine_equals_the_functions_over_the_whole_history(seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, 400)
    arrival = events[:]
    rng.shuffle(arrival)
    engine = FeatureEngine()
    online: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    while arrival:
        size = rng.randrange(1, 40)
        batch, arrival = arrival[:size], arrival[size:]
        for row in engine.rows(engine.apply(batch)):
            online[(row.view, row.entity_id)] = (row.as_of, dict(row.values))
    assert online == direct_rows(events)


@pytest.mark.parametrize("seed", range(4))
def test_the_backfill_holds_every_online_row_at_its_as_of(seed: int) -> None:
    rng = random.Random(100 + seed)
    events = random_events(rng, 300)
    offline = offline_rows(events + events[:50])  # an archive may hold repeats
    latest = {}
    for view_rows in offline.values():
        for row in view_rows:
            latest[(row.view, row.entity_id)] = (row.as_of, dict(row.values))
    assert latest == direct_rows(unique_in_order(events))
    by_time = {(r.view, r.entity_id, r.as_of) for rows in offline.values() for r in rows}
    assert len(by_time) == sum(len(rows) for rows in offline.values())  # one row per time
