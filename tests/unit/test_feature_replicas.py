"""Processor replicas sharing one feature store: each item's and each shopper's rows are
computed from all of their events, though each replica reads only its partitions of a
stream keyed by shopper (items come through the item-events topic, keyed by item; the
category catalog is read in full by every replica)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from shopper.adapters.memory_event_archive import InMemoryEventArchive
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.memory_feature_log import InMemoryFeatureLog
from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.features.engine import FeatureEngine
from shopper.domain.features.spec import FeatureRow
from shopper.services.feature_pipeline import FeaturePipeline
from shopper.services.processor import Processor
from tests.unit.factories import T0, backlog, domain, publish, view, wire

ITEMS = [f"sku-{n}" for n in range(6)]
CATEGORIES = ["toys", "home > kitchen", "fashion > shoes"]
USERS = [f"user-{n}" for n in range(40)]

Rows = dict[tuple[str, str], FeatureRow]


def shop() -> list[dict[str, Any]]:
    """The catalog, then shoppers' views, carts and purchases over 90 minutes."""
    rng = random.Random(3)
    raws = [
        wire(f"c-{i}", "item_upsert", ts=T0 - 60, item={"item_id": i, "category": c, "price": 9.0})
        for i, c in zip(ITEMS, CATEGORIES * 2, strict=True)
    ]
    for n in range(400):
        user, item, at = rng.choice(USERS), rng.choice(ITEMS), T0 + n * 13.5
        raws.append(view(f"v-{n}", user, item, session_id=f"s-{user}", ts=at))
        if n % 7 == 0:
            kind = "add_to_cart" if n % 2 else "purchase"
            raws.append(
                wire(f"b-{n}", kind, user_id=user, item_id=item, price=9.0, quantity=1, ts=at + 1)
            )
    return raws


def expected(raws: list[dict[str, Any]]) -> Rows:
    """What the backfill computes: one engine over every event."""
    engine = FeatureEngine()
    return _keyed(engine.rows(engine.apply([domain(r) for r in raws])))


def online(store: InMemoryFeatureStore) -> Rows:
    rows = [r for u in USERS for r in store.read_user(f"u:{u}").values()]
    return _keyed([*rows, *store.read_items(ITEMS).values()])


def _keyed(rows: list[FeatureRow]) -> Rows:
    return {(r.view, r.entity_id): r for r in rows}


@pytest.fixture
def store() -> InMemoryFeatureStore:
    return InMemoryFeatureStore()


@pytest.fixture
def replicas(store: InMemoryFeatureStore) -> Iterator[list[System]]:
    """Two processes' systems on one stream (4 partitions), one feature store."""
    log = InMemoryEventLog(partitions=4)
    config = load_config({}, feature_store="memory", feature_log_sample=0.0)
    systems = [build_system(config, ManualClock(), shared_log=log) for _ in range(2)]
    for system in systems:
        assert system.features is not None
        system.features.open_store = lambda: store
    yield systems
    for system in systems:
        system.close()


def run(systems: list[System], processors: list[Processor]) -> None:
    """Both replicas' micro-batches until the group has committed everything."""
    for _ in range(1000):
        if backlog(systems[0]) == 0:
            break
        for processor in processors:
            processor.run_once()
    for system in systems:
        assert system.features is not None and system.features.flush(timeout=10)


def test_replicas_push_the_rows_one_process_would(
    replicas: list[System], store: InMemoryFeatureStore
) -> None:
    raws = shop()
    publish(replicas[0].event_log, replicas[0].config.topic_prefix, *raws)
    processors = [system.processor() for system in replicas]
    run(replicas, processors)
    # Each replica took part of the stream...
    assert all(p.stats.applied > 0 for p in processors)
    assert sum(p.stats.applied for p in processors) == len(raws)
    # ...and every item's and every shopper's row counts all of its events.
    want = expected(raws)
    assert len(want) == 2 * len(USERS) + len(ITEMS)
    assert online(store) == want
    # Each event is archived by exactly one replica: training sees it once.
    archived = [e.event_id for s in replicas if s.features for e in s.features.archive.read()]
    assert sorted(archived) == sorted(r["event_id"] for r in raws)


def test_a_redelivered_batch_counts_nothing_twice(
    replicas: list[System], store: InMemoryFeatureStore
) -> None:
    raws = shop()
    publish(replicas[0].event_log, replicas[0].config.topic_prefix, *raws)
    first = replicas[0].processor()
    first.run_once()  # republished, applied, then "crashed" before the commit:
    first.rewind()
    first.run_once()  # the same records again
    run(replicas[:1], [first])
    assert online(store) == expected(raws)


def test_without_the_item_feed_replicas_push_partial_item_rows(
    replicas: list[System], store: InMemoryFeatureStore
) -> None:
    """The control: each replica computing items from its own partitions (what the
    item-events topic is for) gets counts that differ from the whole stream's."""
    for system in replicas:
        assert system.features is not None
        system.features.close()
        system.features = FeaturePipeline(
            InMemoryEventArchive(), lambda: store, InMemoryFeatureLog()
        )
        system.replicated = False
    raws = shop()
    publish(replicas[0].event_log, replicas[0].config.topic_prefix, *raws)
    run(replicas, [system.processor() for system in replicas])
    got, want = online(store), expected(raws)
    wrong = {key[0] for key in want if got.get(key) != want[key]}
    assert "product_stats" in wrong
