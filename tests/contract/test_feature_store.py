"""One contract for every FeatureStore: in memory, Feast with SQLite, Feast with Redis.

Online: what was pushed is read back exactly, the last write wins. Offline: the
point-in-time answer is the latest row at or before the asked time, within the view's TTL,
and nothing after it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.domain.features.spec import (
    AS_OF,
    PRODUCT_STATS,
    SESSION_CONTEXT,
    USER_PROFILE,
    USER_VIEWS,
    Dtype,
    FeatureRow,
    FeatureValue,
    ViewSpec,
)
from shopper.ports.feature_store import FeatureStore

REPO = Path(__file__).parents[2]
T = 1_569_888_000.0  # 2019-10-01 00:00:00 UTC


def profile(user: str, as_of: float, interactions: int = 3, **values: FeatureValue) -> FeatureRow:
    base: dict[str, FeatureValue] = {
        "session_count_7d": 1,
        "interaction_count": interactions,
        "avg_cart_value": 0.1 + 0.2,  # not a round binary number: must survive exactly
        "category_affinity": '{"home > kitchen":0.75,"toys":0.25}',
        "last_seen": as_of,
    }
    return FeatureRow(USER_PROFILE.name, user, as_of, {**base, **values})


def context(user: str, as_of: float, recent: tuple[str, ...] = ("a", "b")) -> FeatureRow:
    values: dict[str, FeatureValue] = {
        "recent_item_ids": recent,
        "cart_item_ids": (),
        "category_interest": "{}",
    }
    return FeatureRow(SESSION_CONTEXT.name, user, as_of, values)


def stats(item: str, as_of: float, views: int = 2, price: float | None = 9.99) -> FeatureRow:
    values: dict[str, FeatureValue] = {
        "views_1h": views,
        "purchases_24h": 0,
        "view_to_purchase_rate": 0.0,
        "trending_score": 1 / 3,
        "price": price,
        "in_stock": False,
        "age_hours": 1e-6,
        "category": "home > kitchen",
    }
    return FeatureRow(PRODUCT_STATS.name, item, as_of, values)


@pytest.fixture(
    params=[
        "memory",
        "feast-sqlite",
        pytest.param("feast-redis", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "memory":
        yield InMemoryFeatureStore()
        return
    from shopper.adapters.feast_feature_store import FeastFeatureStore
    from shopper.adapters.feast_repo import FeastSettings

    redis_url = request.getfixturevalue("redis_url") if request.param == "feast-redis" else None
    settings = FeastSettings(REPO / "feature_repo", tmp_path / "feast", redis_url=redis_url)
    feast = FeastFeatureStore(settings)
    feast.ensure_applied()
    yield feast
    feast.close()


def test_pushed_rows_read_back_exactly(store: FeatureStore) -> None:
    rows = [
        profile("u:ä-1", T + 0.125),
        context("u:ä-1", T + 0.125, recent=("sku-ü", "x" * 200)),
        stats("sku-1", T + 1.5, price=None),
        stats("sku-2", T + 2.0),
    ]
    store.push(rows)
    assert store.read_user("u:ä-1") == {
        USER_PROFILE.name: rows[0],
        SESSION_CONTEXT.name: rows[1],
    }
    assert store.read_items(["sku-2", "sku-1"]) == {"sku-1": rows[2], "sku-2": rows[3]}


def test_unknown_entities_are_left_out(store: FeatureStore) -> None:
    store.push([stats("sku-1", T)])
    assert store.read_user("u:nobody") == {}
    assert store.read_items(["nothing", "sku-1"]) == {"sku-1": stats("sku-1", T)}
    assert store.read_items([]) == {}


def test_a_user_may_have_one_view_and_not_the_other(store: FeatureStore) -> None:
    store.push([profile("s:anon", T)])
    assert store.read_user("s:anon") == {USER_PROFILE.name: profile("s:anon", T)}


def test_many_users_are_read_at_once(store: FeatureStore) -> None:
    store.push([profile("u:1", T), context("u:1", T), profile("s:2", T + 1)])
    assert store.read_users(["u:1", "nobody", "s:2", "u:1"]) == {
        "u:1": {USER_PROFILE.name: profile("u:1", T), SESSION_CONTEXT.name: context("u:1", T)},
        "s:2": {USER_PROFILE.name: profile("s:2", T + 1)},
    }
    assert store.read_users([]) == {}


def test_the_last_write_wins_even_at_the_same_as_of(store: FeatureStore) -> None:
    store.push([stats("sku-1", T, views=1)])
    store.push([stats("sku-1", T, views=5)])  # recomputed after a late event
    assert store.read_items(["sku-1"])["sku-1"].values["views_1h"] == 5
    store.push([stats("sku-1", T + 60, views=7), profile("u:1", T)])
    assert store.read_items(["sku-1"])["sku-1"] == stats("sku-1", T + 60, views=7)


def test_historical_rows_are_point_in_time(store: FeatureStore) -> None:
    store.replace_offline(
        PRODUCT_STATS.name,
        [stats("sku-1", T, views=1), stats("sku-1", T + 600, views=2), stats("sku-2", T, views=9)],
    )
    asked = [
        ("sku-1", T - 0.001),  # before its first row
        ("sku-1", T),  # exactly at a row: included
        ("sku-1", T + 599.999),  # the next row is not yet there
        ("sku-1", T + 600),
        ("sku-2", T + 3600),
        ("sku-1", T),  # asked twice
        ("unknown", T),
    ]
    got = store.historical(PRODUCT_STATS.name, asked)
    assert got == [
        None,
        stats("sku-1", T, views=1),
        stats("sku-1", T, views=1),
        stats("sku-1", T + 600, views=2),
        stats("sku-2", T, views=9),
        stats("sku-1", T, views=1),
        None,
    ]


def test_historical_answers_in_order_however_many_requests(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feast's joins go in chunks (its memory grows with requests x rows per entity):
    answers still come back one per request, in order, across chunk boundaries."""
    import shopper.adapters.feast_feature_store as feast_adapter

    monkeypatch.setattr(feast_adapter, "HISTORICAL_CHUNK", 3)
    rows = [stats(f"sku-{i % 4}", T + i, views=i) for i in range(12)]
    store.replace_offline(PRODUCT_STATS.name, rows)
    asked = [(f"sku-{i % 5}", T + i + 0.5) for i in reversed(range(14))]

    got = store.historical(PRODUCT_STATS.name, asked)

    def latest(item: str, ts: float) -> FeatureRow | None:
        before = [r for r in rows if r.entity_id == item and r.as_of <= ts]
        return max(before, key=lambda r: r.as_of) if before else None

    assert got == [latest(item, ts) for item, ts in asked]
    assert sum(r is None for r in got) == 2  # sku-4 has no rows


def test_historical_rows_expire_with_the_view_ttl(store: FeatureStore) -> None:
    ttl = SESSION_CONTEXT.ttl_s
    store.replace_offline(SESSION_CONTEXT.name, [context("u:1", T)])
    got = store.historical(SESSION_CONTEXT.name, [("u:1", T + ttl), ("u:1", T + ttl + 1)])
    assert got == [context("u:1", T), None]


def test_replacing_the_offline_history_forgets_the_old_one(store: FeatureStore) -> None:
    store.replace_offline(USER_PROFILE.name, [profile("u:1", T, interactions=1)])
    store.replace_offline(USER_PROFILE.name, [profile("u:2", T, interactions=2)])
    assert store.historical(USER_PROFILE.name, [("u:1", T), ("u:2", T)]) == [
        None,
        profile("u:2", T, interactions=2),
    ]
    assert store.historical(USER_PROFILE.name, []) == []


def test_offline_and_online_are_separate(store: FeatureStore) -> None:
    store.push([profile("u:1", T)])
    assert store.historical(USER_PROFILE.name, [("u:1", T)]) == [None]
    store.replace_offline(USER_PROFILE.name, [profile("u:2", T)])
    assert store.read_user("u:2") == {}


# The Feast adapter reads below Feast's `get_online_features` (its per-view step,
# `online_read`), for speed; these hold it to what `get_online_features` itself answers,
# so a Feast upgrade that changes either side fails here.


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def feast_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from shopper.adapters.feast_repo import FeastSettings

    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return FeastSettings(REPO / "feature_repo", tmp_path / "feast", redis_url=redis_url)


def test_feast_reads_equal_feasts_get_online_features(feast_settings: Any) -> None:
    from feast import FeatureStore as FeastStore

    from shopper.adapters.feast_feature_store import FeastFeatureStore
    from shopper.adapters.feast_repo import repo_config

    store = FeastFeatureStore(feast_settings)
    store.ensure_applied()
    store.push(
        [
            profile("u:ä-1", T + 0.125),
            context("u:ä-1", T + 0.125, recent=("sku-ü", "x" * 200)),
            profile("s:anon", T),
            stats("sku-1", T + 1.5, price=None),
            stats("sku-2", T + 2.0, views=7),
        ]
    )
    reference = FeastStore(config=repo_config(feast_settings))
    try:
        for user in ("u:ä-1", "s:anon", "u:nobody"):
            expected = _rows_by_get_online_features(reference, USER_VIEWS, [user])
            assert store.read_user(user) == {row.view: row for row in expected}
        items = ["sku-2", "nothing", "sku-1", "sku-2"]
        expected = _rows_by_get_online_features(reference, [PRODUCT_STATS], items)
        assert store.read_items(items) == {row.entity_id: row for row in expected}
        assert len(expected) == 3  # sku-2 twice, sku-1; "nothing" has no row
    finally:
        store.close()
        _close_feast(reference)


def test_feast_reads_still_work_after_applying_again(feast_settings: Any) -> None:
    from shopper.adapters.feast_feature_store import FeastFeatureStore

    store = FeastFeatureStore(feast_settings)
    try:
        store.ensure_applied()
        store.push([stats("sku-1", T)])
        assert store.read_items(["sku-1"]) == {"sku-1": stats("sku-1", T)}
        store.apply()  # the views read are the registry's again
        store.push([stats("sku-1", T + 1, views=3)])
        assert store.read_items(["sku-1"]) == {"sku-1": stats("sku-1", T + 1, views=3)}
    finally:
        store.close()


def _rows_by_get_online_features(
    feast: Any, views: Sequence[ViewSpec], entity_ids: list[str]
) -> list[FeatureRow]:
    """The rows as Feast's public read answers them, converted from its `to_dict()`."""
    key = views[0].entity.join_key
    refs = [f"{v.name}:{name}" for v in views for name in (AS_OF, *v.feature_names)]
    answer = feast.get_online_features(
        features=refs, entity_rows=[{key: e} for e in entity_ids], full_feature_names=True
    ).to_dict()
    rows = []
    for view in views:
        for n, entity in enumerate(entity_ids):
            as_of = answer[f"{view.name}__{AS_OF}"][n]
            if as_of is not None:
                values = {
                    f.name: _feast_value(f.dtype, answer[f"{view.name}__{f.name}"][n])
                    for f in view.features
                }
                rows.append(FeatureRow(view.name, entity, as_of, values))
    return rows


def _feast_value(dtype: Dtype, value: Any) -> FeatureValue:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if dtype is Dtype.STRING_LIST:
        return tuple(json.loads(value))
    typed: FeatureValue = value
    return typed


def _close_feast(feast: Any) -> None:
    client = getattr(feast.provider.online_store, "_client", None)
    if client is not None:
        client.close()


def test_an_older_row_does_not_replace_a_newer_one(store: FeatureStore) -> None:
    """What processor replicas rely on: one that has just lost an item to another
    replica may still push the item's row as of an earlier time; it must not win."""
    store.push([stats("sku-1", T + 60, views=7)])
    store.push([stats("sku-1", T, views=1)])
    assert store.read_items(["sku-1"])["sku-1"] == stats("sku-1", T + 60, views=7)


def test_feast_reads_what_feasts_own_push_writes(feast_settings: Any, tmp_path: Path) -> None:
    """The adapter writes below Feast's `push` (its last step, `online_write_batch`); rows
    written either way read back the same through `get_online_features`."""
    from dataclasses import replace

    import pandas as pd
    from feast import FeatureStore as FeastStore
    from feast.data_source import PushMode

    from shopper.adapters.feast_feature_store import FeastFeatureStore, _records
    from shopper.adapters.feast_repo import repo_config

    rows = [
        profile("u:ä-1", T + 0.125),
        context("u:ä-1", T + 0.125, recent=("sku-ü", "x" * 200)),
        context("s:anon", T, recent=()),
        stats("sku-1", T + 1.5, price=None),
        stats("sku-2", T + 2.0, views=7),
    ]
    ours = FeastFeatureStore(feast_settings)
    ours.ensure_applied()
    ours.push(rows)
    theirs_settings = replace(
        feast_settings, data_dir=tmp_path / "theirs", project="shopper_theirs"
    )
    theirs = FeastFeatureStore(theirs_settings)
    theirs.ensure_applied()
    reference = FeastStore(config=repo_config(feast_settings))
    pushed = FeastStore(config=repo_config(theirs_settings))
    try:
        for spec in (USER_PROFILE, SESSION_CONTEXT, PRODUCT_STATS):
            view_rows = [r for r in rows if r.view == spec.name]
            source = pushed.get_feature_view(spec.name).stream_source
            assert source is not None
            frame = pd.DataFrame(_records(spec, view_rows))
            pushed.push(source.name, frame, to=PushMode.ONLINE)
        for views, ids in (
            (USER_VIEWS, ["u:ä-1", "s:anon"]),
            ([PRODUCT_STATS], ["sku-1", "sku-2"]),
        ):
            mine = _rows_by_get_online_features(reference, views, ids)
            assert mine == _rows_by_get_online_features(pushed, views, ids)
            assert len(mine) == (3 if views is USER_VIEWS else 2)
    finally:
        for feast in (reference, pushed):
            _close_feast(feast)
        ours.teardown()
        theirs.teardown()
        ours.close()
        theirs.close()
