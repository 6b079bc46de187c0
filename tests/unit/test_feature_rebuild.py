"""The feature engine's state rebuilt from the archive at start-up: the same state the
backfill's engine reaches over the same events, one UTC day read at a time; and when the
archive cannot be read, rows are tagged so the skew check can say why they differ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shopper.adapters.jsonl_feature_log import JsonlFeatureLog
from shopper.adapters.memory_event_archive import InMemoryEventArchive
from shopper.adapters.memory_feature_log import InMemoryFeatureLog
from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.parquet_event_archive import ParquetEventArchive
from shopper.domain.event import Event
from shopper.domain.features.engine import ITEM, USER, FeatureEngine, unique_in_order
from shopper.domain.features.spec import PRODUCT_STATS
from shopper.ports.feature_store import BEFORE_REBUILD, ServedRow
from shopper.services.feature_backfill import backfill
from shopper.services.feature_pipeline import FeaturePipeline
from shopper.services.feature_rebuild import rebuild_engine
from shopper.services.skew import LATE_EVENTS, EventCounts, check_skew
from tests.unit.factories import T0, domain, view, wire

DAY = 86_400.0
USERS = [f"user-{n}" for n in range(5)]
ITEMS = [f"sku-{n}" for n in range(4)]


def history() -> list[Event]:
    """Ten days of a small shop (longer than every horizon, so carries matter), with a
    re-delivered event and an id repeated days later (the later copy does not count)."""
    raws = [
        wire(f"c-{i}", "item_upsert", ts=T0, item={"item_id": i, "category": "toys", "price": 5.0})
        for i in ITEMS
    ]
    for n in range(300):
        at = T0 + n * 2_900.0  # ~10 days
        raws.append(view(f"v-{n}", USERS[n % 5], ITEMS[n % 4], session_id=f"s{n // 20}", ts=at))
    events = [domain(r) for r in raws]
    events.append(events[10])  # re-delivered: archived twice
    events.append(domain(view("v-3", "user-3", "sku-0", ts=T0 + 9 * DAY)))  # id reused
    return events


def rows_of(engine: FeatureEngine) -> dict[tuple[str, str], object]:
    entities = {(USER, f"u:{u}") for u in USERS} | {(ITEM, i) for i in ITEMS}
    return {(r.view, r.entity_id): r for r in engine.rows(entities)}


def test_the_rebuilt_state_is_the_backfills(tmp_path: Path) -> None:
    archive = ParquetEventArchive(tmp_path / "archive", flush_events=37)
    events = history()
    archive.append(events)
    archive.flush()
    assert archive.size() == len(events)
    backfilled = FeatureEngine()
    backfilled.apply(unique_in_order(events))
    rebuilt = FeatureEngine()
    ticks: list[tuple[int, int]] = []
    result = rebuild_engine(rebuilt, archive, lambda n, total: ticks.append((n, total)))
    assert result.complete and result.events == len(events) - 2 and result.read == len(events)
    assert rows_of(rebuilt) == rows_of(backfilled)
    # One tick per UTC day read, each with the total; together every archived event.
    assert len(ticks) == len({int(e.ts // DAY) for e in events}) >= 10
    assert sum(n for n, _ in ticks) == len(events) and {t for _, t in ticks} == {len(events)}


def test_days_come_in_time_order_whatever_the_order_of_appends() -> None:
    archive = InMemoryEventArchive()
    archive.append(list(reversed(history())))
    days = [min(e.ts for e in day) for day in archive.read_days()]
    assert days == sorted(days) and len(days) >= 10


class BrokenArchive(InMemoryEventArchive):
    def read_days(self) -> Iterator[list[Event]]:
        yield from super().read_days()
        raise OSError("disk gone")


def test_an_unreadable_archive_tags_the_rows_computed_without_its_history() -> None:
    archive = BrokenArchive()
    archive.append([domain(view(f"old{n}", "alice", "sku-1", ts=T0 + n)) for n in range(5)])
    store, served = InMemoryFeatureStore(), InMemoryFeatureLog()
    pipeline = FeaturePipeline(archive, lambda: store, served, log_sample=1.0)
    assert pipeline.start(timeout=10)
    assert pipeline.stats.state_complete is False and pipeline.stats.errors == 1
    pipeline.observe([domain(view("new", "alice", "sku-1", ts=T0 + 60))])
    assert pipeline.flush()
    pipeline.close()
    rows = served.read()
    assert rows and all((r.incomplete or "").startswith(BEFORE_REBUILD) for r in rows)
    assert "disk gone" in (rows[0].incomplete or "")


def test_a_complete_rebuild_tags_nothing() -> None:
    archive = InMemoryEventArchive()
    archive.append([domain(view(f"old{n}", "alice", "sku-1", ts=T0 + n)) for n in range(5)])
    served = InMemoryFeatureLog()
    store = InMemoryFeatureStore()
    pipeline = FeaturePipeline(archive, lambda: store, served, log_sample=1.0)
    assert pipeline.start(timeout=10)
    pipeline.observe([domain(view("new", "alice", "sku-1", ts=T0 + 60))])
    assert pipeline.flush()
    pipeline.close()
    assert pipeline.stats.state_complete and pipeline.stats.rebuild_events == 5
    assert [r.incomplete for r in served.read()] == [None] * len(served.read()) != []
    assert store.read_items(["sku-1"])["sku-1"].values["views_1h"] == 6


def test_rows_computed_before_the_rebuild_are_late_with_their_reason() -> None:
    """An item row served by an engine that lacked the archive (1 view where training
    sees 3) is late, reason `before_rebuild`; the same row untagged is real skew."""
    events = [domain(view(f"v{n}", "bob", "sku-1", ts=T0 + n)) for n in range(3)]
    store = InMemoryFeatureStore()
    backfill(archive_of(events), store)
    row = store.historical(PRODUCT_STATS.name, [("sku-1", T0 + 2)])[0]
    assert row is not None and row.values["views_1h"] == 3
    short = type(row)(row.view, row.entity_id, row.as_of, {**row.values, "views_1h": 1})
    tagged = ServedRow(short, 1, f"{BEFORE_REBUILD}: OSError('disk gone')")
    report = check_skew(store, [tagged], [], EventCounts(events))
    assert (report.mismatches, report.late, report.unexplained) == (1, 1, 0)
    assert report.late_reasons == {BEFORE_REBUILD: 1, LATE_EVENTS: 0}
    untagged = check_skew(store, [ServedRow(short)], [], EventCounts(events))
    assert (untagged.mismatches, untagged.unexplained) == (1, 1)


def test_the_served_log_keeps_the_reason(tmp_path: Path) -> None:
    row = domain(view("v", "bob", "sku-1"))
    engine = FeatureEngine()
    item = engine.rows(engine.apply([row]) & {(ITEM, "sku-1")})[0]
    log = JsonlFeatureLog(tmp_path)
    log.append([ServedRow(item, 1, "before_rebuild: x"), ServedRow(item, 1)])
    assert [r.incomplete for r in log.read()] == ["before_rebuild: x", None]


def archive_of(events: list[Event]) -> InMemoryEventArchive:
    archive = InMemoryEventArchive()
    archive.append(events)
    return archive
