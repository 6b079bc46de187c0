"""The feature store's must-shows on real data (REES46, ~17k events, through the stream).

- Offline equals online: a replay through the API's ingest, the stream and the processor
  leaves online rows that the offline store (backfilled from the archive) holds exactly,
  for every feature, including entities at window edges and after a time-zone change.
- The offline join is point-in-time correct: no training row sees a later event.
- `shopper features check-skew` finds no mismatch after a run, and names the feature when
  one side's definition is changed.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from shopper.bootstrap import System, build_system
from shopper.cli import app
from shopper.config import load_config
from shopper.domain.event import Event
from shopper.domain.features import product_stats
from shopper.domain.features.product_stats import ItemCarry
from shopper.domain.features.spec import PRODUCT_STATS, FeatureRow
from shopper.domain.features.timeline import Timeline
from shopper.ports.feature_store import FeatureStore
from shopper.services.feature_backfill import backfill
from tests.fixtures.redis import LEASE_KEY
from tests.unit.factories import domain, drain

REPO = Path(__file__).parents[2]
DATA = REPO / ".." / "shared" / "data"
REES46 = DATA / "rees46-multicategory-2019oct-head" / "2019-Oct.csv.gz"
TYPES = {"view": "view", "cart": "add_to_cart", "purchase": "purchase"}
CHUNK = 1000  # events posted at a time, then processed: a live shop, in time order
USER_SAMPLE = 800

pytestmark = pytest.mark.skipif(
    not REES46.exists(), reason=f"the shared data sets are not here ({DATA})"
)


def rees46(
    offset: timedelta, until: datetime | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Catalog upserts and events of the data set (up to `until`), every timestamp
    written in `offset`. Each item is listed one second before its first event."""
    zone = timezone(offset)
    with gzip.open(REES46, "rt", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["user_session"] and r["product_id"]]
    events, listed = [], {}
    for i, row in enumerate(rows):
        at = datetime.fromisoformat(row["event_time"].replace(" UTC", "+00:00"))
        if until is not None and at > until:
            continue
        listed.setdefault(row["product_id"], (at - timedelta(seconds=1), row))
        events.append(
            {
                "event_id": f"rees-{i}",
                "type": TYPES[row["event_type"]],
                "ts": at.astimezone(zone).isoformat(),
                "user_id": row["user_id"],
                "session_id": row["user_session"],
                "item_id": row["product_id"],
                "price": float(row["price"]),
            }
        )
    catalog = [
        {
            "event_id": f"list-{item}",
            "type": "item_upsert",
            "ts": at.astimezone(zone).isoformat(),
            "item": {
                "item_id": item,
                "category": row["category_code"] or f"category.{row['category_id']}",
                "price": float(row["price"]),
            },
        }
        for item, (at, row) in listed.items()
    ]
    return catalog, events + edge_events(zone)


EDGE_T = datetime(2019, 10, 1, 1, 0, tzinfo=UTC)


def edge_events(zone: timezone) -> list[dict[str, Any]]:
    """Entities made to sit exactly on window edges: views an hour apart to the
    microsecond, a shopper back exactly 7 days and exactly 24 h later."""

    def at(delta: timedelta) -> str:
        return (EDGE_T + delta).astimezone(zone).isoformat()

    out = []
    for n, delta in enumerate([timedelta(0), timedelta(minutes=30), timedelta(hours=1)]):
        out.append({"event_id": f"edge-i{n}", "type": "view", "ts": at(delta)})
        out[-1].update(user_id=f"edge-viewer-{n}", item_id="edge-item", session_id=f"es{n}")
    for n, delta in enumerate([timedelta(days=-7), timedelta(days=-1), timedelta(0)]):
        out.append({"event_id": f"edge-u{n}", "type": "view", "ts": at(delta)})
        out[-1].update(user_id="edge-user", item_id="edge-item", session_id="same-session")
    return out


@dataclass
class Replay:
    system: System
    store: FeatureStore  # a handle of its own on the online and offline store
    events: list[Event]
    data_dir: Path
    # Online rows of items read as the replay went, at moments when one of the item's
    # events was within two minutes of falling out of the 1-hour window.
    at_the_hour_edge: list[FeatureRow]


def replay(
    data_dir: Path,
    offset: timedelta,
    feature_store: str,
    until: datetime | None = None,
    **settings: Any,
) -> Replay:
    config = load_config(
        {},
        data_dir=data_dir,
        feature_store=feature_store,
        feature_repo=REPO / "feature_repo",
        feature_log_sample=0.05,
        microbatch_wait_s=0,
        microbatch_max_events=CHUNK,  # one micro-batch per chunk: none overtakes another
        popular_refresh_s=3600,
        max_batch=CHUNK,
        **settings,
    )
    system = build_system(config)
    assert system.features is not None
    store = system.features.open_store()
    processor = system.processor()
    catalog, events = rees46(offset, until)
    for batch in (catalog[n : n + 1000] for n in range(0, len(catalog), 1000)):
        assert system.ingest.ingest(batch).accepted == len(batch)
    drain(system, processor)
    pairs = sorted(((domain(raw), raw) for raw in events), key=lambda pair: pair[0].ts)
    ordered = [event for event, _ in pairs]
    seen: dict[str, list[float]] = {}
    edge_rows: list[FeatureRow] = []
    for n in range(0, len(pairs), CHUNK):
        chunk = ordered[n : n + CHUNK]
        raws = [raw for _, raw in pairs[n : n + CHUNK]]
        assert system.ingest.ingest(raws).accepted == len(chunk)
        drain(system, processor)
        assert system.features.flush(60)
        for e in chunk:
            seen.setdefault(str(e.item_id), []).append(e.ts)
        touched = store.read_items(sorted({str(e.item_id) for e in chunk}))
        edge_rows += [r for r in touched.values() if near_hour_edge(r, seen[r.entity_id])]
    processor.close()
    assert system.features.stats.errors == 0
    all_events = [domain(e) for e in catalog] + ordered
    return Replay(system, store, all_events, data_dir, edge_rows)


def near_hour_edge(row: FeatureRow, times: list[float]) -> bool:
    return any(abs(row.as_of - 3600 - ts) <= 120 for ts in times)


@pytest.fixture(scope="module")
def utc_replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    run = replay(tmp_path_factory.mktemp("utc"), timedelta(0), "feast")
    run.system.close()
    backfill(run.system.features.archive, run.store)  # type: ignore[union-attr]
    yield run
    run.store.close()


def online_rows(run: Replay, users: list[str], items: list[str]) -> list[FeatureRow]:
    rows = [row for user in users for row in run.store.read_user(user).values()]
    return rows + list(run.store.read_items(items).values())


def entities(run: Replay) -> tuple[list[str], list[str]]:
    users = sorted({e.subject for e in run.events if not e.is_catalog})
    items = sorted({e.item_id or e.item.item_id for e in run.events if e.item or e.item_id})  # type: ignore[union-attr]
    return users, items


def checked_users(users: list[str]) -> list[str]:
    edge = [u for u in users if u.startswith("u:edge-")]
    return sorted(set(random.Random(4).sample(users, USER_SAMPLE)) | set(edge))


def assert_offline_equals_online(store: FeatureStore, rows: list[FeatureRow]) -> None:
    for view in {r.view for r in rows}:
        mine = [r for r in rows if r.view == view]
        offline = store.historical(view, [(r.entity_id, r.as_of) for r in mine])
        differing = [(o, f) for o, f in zip(mine, offline, strict=True) if o != f]
        assert differing == [], f"{len(differing)} of {len(mine)} {view} rows differ"


def test_offline_equals_online_for_every_feature_and_entity(utc_replay: Replay) -> None:
    users, items = entities(utc_replay)
    rows = online_rows(utc_replay, checked_users(users), items)
    assert {r.view for r in rows} == {"user_profile", "session_context", "product_stats"}
    assert len([r for r in rows if r.view == PRODUCT_STATS.name]) == len(items)
    assert_offline_equals_online(utc_replay.store, rows)


def test_entities_at_window_edges_agree_and_mean_what_the_windows_say(
    utc_replay: Replay,
) -> None:
    store = utc_replay.store
    item = store.read_items(["edge-item"])["edge-item"]
    assert item.as_of == EDGE_T.timestamp() + 3600
    assert item.values["views_1h"] == 2  # the view exactly an hour earlier is out
    user = store.read_user("u:edge-user")
    assert user["user_profile"].values["session_count_7d"] == 1  # 7 days ago: out
    assert user["user_profile"].values["interaction_count"] == 3  # lifetime: in
    # The same session a day earlier is past the session lookback: one recent item.
    assert user["session_context"].values["recent_item_ids"] == ("edge-item",)
    assert_offline_equals_online(store, [item, *user.values()])
    # Real items read while one of their events was within a minute of the 1-hour edge.
    assert len(utc_replay.at_the_hour_edge) >= 30
    assert_offline_equals_online(store, utc_replay.at_the_hour_edge)


def test_a_time_zone_change_of_the_input_changes_no_feature(
    utc_replay: Replay, tmp_path: Path
) -> None:
    """The data up to 02:30 again (a third of it), every timestamp written at UTC-09:30,
    on the previous calendar day, through the stream: each entity's online row equals
    the UTC run's offline row for the same time."""
    until = datetime(2019, 10, 1, 2, 30, tzinfo=UTC)
    shifted = replay(tmp_path, timedelta(hours=-9, minutes=-30), "memory", until)
    try:
        users, items = entities(shifted)
        rows = online_rows(shifted, users, items)
        assert len(rows) == 2 * len(users) + len(items) and len(items) > 2000
        assert_offline_equals_online(utc_replay.store, rows)
    finally:
        shifted.system.close()


def test_training_rows_never_see_events_after_their_label_time(utc_replay: Replay) -> None:
    """Labels between an item's events (and before its first): each training row holds
    exactly the functions' values over the events up to the label, though the very next
    event would have changed them."""
    by_item: dict[str, list[Event]] = {}
    for e in utc_replay.events:
        item = e.item.item_id if e.item is not None else e.item_id
        if item is not None:
            by_item.setdefault(item, []).append(e)
    busy = sorted(i for i, evs in by_item.items() if len(evs) >= 15)[:40]
    labels: list[tuple[str, float]] = []
    for item in busy:
        stamps = sorted({e.ts for e in by_item[item]})
        labels += [(item, (a + b) / 2) for a, b in zip(stamps[::3], stamps[1::3], strict=False)]
        labels.append((item, stamps[0] - 0.5))
    assert len(labels) > 200
    rows = utc_replay.store.historical(PRODUCT_STATS.name, labels)
    next_event_matters = 0
    for (item, label), row in zip(labels, rows, strict=True):
        past = [e for e in by_item[item] if e.ts <= label]
        if not past:
            assert row is None
            continue
        as_of = max(e.ts for e in past)
        assert row is not None and row.as_of == as_of <= label
        assert row.values == product_stats.compute_product_stats(_timeline(past, as_of))
        following = min(e.ts for e in by_item[item] if e.ts > label)
        leaked = [e for e in by_item[item] if e.ts <= following]
        next_event_matters += row.values != product_stats.compute_product_stats(
            _timeline(leaked, following)
        )
    assert next_event_matters > len(labels) // 2


def _timeline(events: list[Event], as_of: float) -> Timeline[ItemCarry]:
    return Timeline.of(events, as_of, ItemCarry())


def check_skew(data_dir: Path) -> tuple[int, dict[str, Any]]:
    env = {"SHOPPER_FEATURE_REPO": str(REPO / "feature_repo")}
    args = ["features", "check-skew", "--json", "--sample", "300", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_check_skew_finds_nothing_after_a_run_and_names_a_changed_feature(
    utc_replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, report = check_skew(utc_replay.data_dir)
    assert (code, report["mismatches"], report["missing_offline"]) == (0, 0, 0)
    assert report["checked"] >= 600 and report["sources"]["served"] > 0
    assert set(report["by_feature"].values()) == {0}

    # The offline side's definition of one feature changes; the online rows stay.
    original = product_stats.views_1h
    monkeypatch.setattr(product_stats, "views_1h", lambda t: original(t) + 1)
    code, report = check_skew(utc_replay.data_dir)
    assert code == 1 and report["mismatches"] > 0
    wrong = {name for name, count in report["by_feature"].items() if count}
    assert wrong == {"product_stats:views_1h"}
    assert {m["feature"] for m in report["examples"]} == {"views_1h"}


@pytest.mark.redis
def test_production_mode_keeps_online_features_in_redis_in_a_key_space_of_their_own(
    redis_url: str, tmp_path: Path
) -> None:
    """The cache, the processor state and Feast's online store in one Redis database."""
    until = datetime(2019, 10, 1, 2, 5, tzinfo=UTC)
    run = replay(
        tmp_path, timedelta(0), "feast", until, cache_url=redis_url, redis_key_prefix="rt:"
    )
    try:
        run.system.close()
        backfill(run.system.features.archive, run.store)  # type: ignore[union-attr]
        users, items = entities(run)
        rows = online_rows(run, users, items)
        assert len(rows) == 2 * len(users) + len(items) and len(items) > 500
        assert_offline_equals_online(run.store, rows)
        client = redis.Redis.from_url(redis_url)
        keys = [k for k in client.scan_iter(count=1000) if k != LEASE_KEY.encode()]
        client.close()
        feast_keys = [k for k in keys if not k.startswith(b"rt:")]
        assert len(feast_keys) == len(users) + len(items)  # one hash per entity
        assert all(k.endswith(b"shopper") for k in feast_keys)  # Feast's project suffix
    finally:
        run.store.close()
