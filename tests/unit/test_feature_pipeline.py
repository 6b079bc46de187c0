"""The processor's feature pipeline: archive, online push, served log, and that a broken
or slow feature store never holds up the lists."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from shopper.adapters.memory_event_archive import InMemoryEventArchive
from shopper.adapters.memory_feature_log import InMemoryFeatureLog
from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.features.engine import FeatureEngine
from shopper.domain.features.spec import FeatureRow
from shopper.services import feature_pipeline as features_module
from shopper.services.feature_backfill import backfill
from shopper.services.feature_pipeline import FeaturePipeline
from shopper.services.skew import EventCounts, check_skew
from tests.unit.factories import T0, domain, drain, publish, view, wire


@pytest.fixture
def system() -> Iterator[System]:
    config = load_config({}, feature_store="memory", feature_log_sample=1.0, popular_refresh_s=0)
    built = build_system(config, clock=ManualClock())
    yield built
    built.close()


def shop_events() -> list[dict[str, Any]]:
    return [
        wire("c1", "item_upsert", item={"item_id": "sku-1", "category": "toys", "stock": 3}),
        view("e1", "alice", "sku-1", session_id="s1"),
        view("e2", "alice", "sku-2", session_id="s1", ts=T0 + 5),
        wire("e3", "add_to_cart", user_id="bob", item_id="sku-1", price=5.0, ts=T0 + 9),
        wire("e4", "stock_change", item_id="sku-2", quantity=0, ts=T0 + 10),
    ]


def expected_rows(raws: list[dict[str, Any]]) -> dict[tuple[str, str], FeatureRow]:
    engine = FeatureEngine()
    rows = engine.rows(engine.apply([domain(r) for r in raws]))
    return {(r.view, r.entity_id): r for r in rows}


def online_rows(system: System) -> dict[tuple[str, str], FeatureRow]:
    assert system.features is not None
    store = system.features.open_store()
    rows = [*store.read_user("u:alice").values(), *store.read_user("u:bob").values()]
    rows += store.read_items(["sku-1", "sku-2"]).values()
    return {(r.view, r.entity_id): r for r in rows}


def test_each_batch_is_archived_and_its_rows_pushed_online(system: System) -> None:
    raws = shop_events()
    publish(system.event_log, system.config.topic_prefix, *raws)
    processor = system.processor()
    drain(system, processor)
    assert system.features is not None and system.features.flush()
    archived = sorted(e.event_id for e in system.features.archive.read())
    assert archived == sorted(r["event_id"] for r in raws)
    assert online_rows(system) == expected_rows(raws)
    # Every entity is sampled at 1.0: the rows read back are the ones served.
    served = system.features.served_log.read()
    assert {(s.row.view, s.row.entity_id) for s in served} == set(expected_rows(raws))
    # Each with the number of the entity's events it was computed from: alice viewed two
    # items, bob carted one; sku-1 had a listing, a view and a cart; sku-2 a view and a
    # sell-out. All in one batch here, so every row saw every event of its time.
    seen = {(s.row.view, s.row.entity_id): s.events_seen for s in served}
    assert seen[("user_profile", "u:alice")] == seen[("session_context", "u:alice")] == 2
    assert seen[("user_profile", "u:bob")] == 1
    assert seen[("product_stats", "sku-1")] == 3
    assert seen[("product_stats", "sku-2")] == 2


def test_a_row_served_before_a_late_event_is_told_apart_from_skew(system: System) -> None:
    """sku-1 is viewed at T0 + 60; a view at T0 (from another partition) arrives in a
    later batch. The row served in between lacked it: the check calls it late, not skew."""
    assert system.features is not None
    store = system.features.open_store()
    processor = system.processor()
    publish(system.event_log, system.config.topic_prefix, view("v2", "bob", "sku-1", ts=T0 + 60))
    drain(system, processor)
    publish(system.event_log, system.config.topic_prefix, view("v1", "alice", "sku-1", ts=T0))
    drain(system, processor)
    assert system.features.flush()
    served = [s for s in system.features.served_log.read() if s.row.view == "product_stats"]
    assert [(s.row.as_of, s.row.values["views_1h"], s.events_seen) for s in served] == [
        (T0 + 60, 1, 1),
        (T0 + 60, 2, 2),
    ]
    backfill(system.features.archive, store)
    events = EventCounts(system.features.archive.read())
    report = check_skew(store, served, [], events)
    assert (report.checked, report.mismatches, report.late, report.unexplained) == (2, 1, 1, 0)


def test_redelivered_events_reach_the_features_once(system: System) -> None:
    raws = shop_events()
    publish(system.event_log, system.config.topic_prefix, *raws, *raws)
    drain(system, system.processor())
    assert system.features is not None and system.features.flush()
    assert len(list(system.features.archive.read())) == len(raws)
    assert online_rows(system) == expected_rows(raws)


def test_without_a_feature_store_the_processor_works_as_before() -> None:
    config = load_config({}, popular_refresh_s=0)
    system = build_system(config, clock=ManualClock())
    try:
        assert system.features is None
        publish(system.event_log, config.topic_prefix, *shop_events())
        drain(system, system.processor())
        page = system.reader.recommend(_page("alice"))
        assert page.source.value == "personalized"
    finally:
        system.close()


def _page(user: str) -> Any:
    from shopper.services.serving import PageRequest

    return PageRequest(user_id=user)


class FlakyStore(InMemoryFeatureStore):
    """Down until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def push(self, rows: Sequence[FeatureRow]) -> None:
        if self.down:
            raise ConnectionError("feature store is down")
        super().push(rows)


def test_a_failing_feature_store_does_not_stop_the_lists(system: System) -> None:
    assert system.features is not None
    system.features.close()
    store = FlakyStore()
    system.features = FeaturePipeline(InMemoryEventArchive(), lambda: store, InMemoryFeatureLog())
    raws = shop_events()
    publish(system.event_log, system.config.topic_prefix, *raws[:3])
    processor = system.processor()
    drain(system, processor)
    assert system.features.flush()
    assert system.reader.recommend(_page("alice")).source.value == "personalized"
    assert system.features.stats.errors == 1
    # The archive still took the events: training loses nothing.
    assert len(list(system.features.archive.read())) == 3
    # Back up: the next batch brings the rows the failed push left behind.
    store.down = False
    publish(system.event_log, system.config.topic_prefix, *raws[3:])
    drain(system, processor)
    assert system.features.flush()
    assert online_rows(system) == expected_rows(raws)


def test_a_stuck_feature_store_drops_batches_instead_of_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(features_module, "HANDOFF_TIMEOUT_S", 0.01)
    release = threading.Event()

    class StuckStore(InMemoryFeatureStore):
        def push(self, rows: Sequence[FeatureRow]) -> None:
            release.wait(10)

    pipeline = FeaturePipeline(
        InMemoryEventArchive(), StuckStore, InMemoryFeatureLog(), max_queued_batches=1
    )
    try:
        events = [domain(view(f"e{n}", "alice", "sku-1")) for n in range(4)]
        for event in events:
            pipeline.observe([event])  # returns at once even when nothing moves
        assert pipeline.stats.dropped_batches >= 1
    finally:
        release.set()
        pipeline.close()


def test_a_restarted_pipeline_starts_from_the_archived_history() -> None:
    archive = InMemoryEventArchive()
    archive.append([domain(view(f"old{n}", "alice", "sku-1", ts=T0 + n)) for n in range(12)])
    store = InMemoryFeatureStore()
    pipeline = FeaturePipeline(archive, lambda: store, InMemoryFeatureLog())
    pipeline.observe([domain(view("new", "alice", "sku-2", ts=T0 + 60))])
    assert pipeline.flush()
    pipeline.close()
    profile = store.read_user("u:alice")["user_profile"]
    assert profile.values["interaction_count"] == 13  # 12 before the restart, 1 after
    assert store.read_items(["sku-1"]) == {}  # untouched since the restart: not pushed


def test_the_served_sample_is_stable_and_about_its_rate() -> None:
    ids = [f"u:{n}" for n in range(4000)]
    picked = [i for i in ids if features_module.sampled_entity(i, 0.05)]
    assert 120 < len(picked) < 280
    assert picked == [i for i in ids if features_module.sampled_entity(i, 0.05)]
    assert not any(features_module.sampled_entity(i, 0.0) for i in ids)
    assert all(features_module.sampled_entity(i, 1.0) for i in ids)
