"""An embedded server restarted mid-stream: the new process's feature engine rebuilds its
state from the event archive before it takes a live event, so every online row it pushes
equals the offline store's point-in-time row (the backfill over the same archive)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.features.engine import ITEM, USER, FeatureEngine
from shopper.domain.features.spec import FeatureRow
from shopper.ports.feature_store import FeatureStore
from shopper.services.feature_backfill import backfill
from tests.unit.factories import T0, domain, drain, view, wire

REPO = Path(__file__).parents[2]
USERS = [f"user-{n}" for n in range(30)]
ITEMS = [f"sku-{n}" for n in range(8)]
HOURS = 72  # longer than the items' 24-hour horizon: carried summaries matter too


def shop() -> list[dict[str, Any]]:
    """The catalog, then three days of views, carts and purchases, in time order."""
    rng = random.Random(11)
    raws = [
        wire(f"c-{i}", "item_upsert", ts=T0 - 60, item={"item_id": i, "category": "toys"})
        for i in ITEMS
    ]
    for n in range(HOURS * 6):  # one event every 10 minutes
        user, item, at = rng.choice(USERS), rng.choice(ITEMS), T0 + n * 600.0
        raws.append(view(f"v-{n}", user, item, session_id=f"s-{user}-{n // 36}", ts=at))
        if n % 5 == 0:
            kind = "add_to_cart" if n % 2 else "purchase"
            raws.append(
                wire(f"b-{n}", kind, user_id=user, item_id=item, price=4.5, quantity=1, ts=at + 1)
            )
    return raws


def server(data_dir: Path) -> System:
    config = load_config(
        {},
        data_dir=data_dir,
        feature_store="feast",
        feature_repo=REPO / "feature_repo",
        feature_log_sample=0.0,
        microbatch_wait_s=0,
        popular_refresh_s=3600,
    )
    return build_system(config)


def run(system: System, raws: list[dict[str, Any]]) -> None:
    """The server as `shopper serve` starts it (features ready first), then the events."""
    assert system.features is not None and system.features.start(timeout=120)
    processor = system.processor()
    for n in range(0, len(raws), 50):
        assert system.ingest.ingest(raws[n : n + 50]).accepted == len(raws[n : n + 50])
        drain(system, processor)
    assert system.features.flush(60)
    processor.close()


def online_rows(store: FeatureStore) -> list[FeatureRow]:
    rows = [row for user in USERS for row in store.read_user(f"u:{user}").values()]
    return rows + list(store.read_items(ITEMS).values())


def test_rows_pushed_after_a_restart_equal_the_offline_point_in_time_rows(
    tmp_path: Path,
) -> None:
    raws = shop()
    half = len(raws) // 2
    first = server(tmp_path)
    run(first, raws[:half])
    first.close()  # the process stops: its engine's state is gone

    second = server(tmp_path)
    try:
        run(second, raws[half:])
        assert second.features is not None
        stats = second.features.stats
        assert (stats.rebuild_events, stats.state_complete, stats.errors) == (half, True, 0)
    finally:
        second.close()

    assert second.features is not None
    store = second.features.open_store()
    try:
        backfill(second.features.archive, store)
        rows = online_rows(store)
        assert len(rows) == 2 * len(USERS) + len(ITEMS)
        offline = {
            view: store.historical(view, [(r.entity_id, r.as_of) for r in rows if r.view == view])
            for view in {r.view for r in rows}
        }
        wrong = [
            (r, o)
            for view, answers in offline.items()
            for r, o in zip([r for r in rows if r.view == view], answers, strict=True)
            if r != o
        ]
        assert wrong == [], f"{len(wrong)} of {len(rows)} rows differ, e.g. {wrong[:1]}"
    finally:
        store.close()
    # The control: an engine that saw only the events after the restart computes other
    # rows for most entities, so the check above could fail.
    fresh = FeatureEngine()
    touched = fresh.apply(domain(r) for r in raws[half:])
    after_only = {(r.view, r.entity_id): r for r in fresh.rows(touched)}
    got = {(r.view, r.entity_id): r for r in rows}
    differ = [key for key, row in after_only.items() if got[key].values != row.values]
    assert len(differ) > len(touched) // 2
    assert {USER, ITEM} <= {kind for kind, _ in touched}
