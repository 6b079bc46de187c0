"""Two processor replicas on Kafka (tansu), each with its own Kafka clients as two processes
have, sharing one feature store: every item's and shopper's online row equals what one
engine over the whole stream computes (items reach their owner through the item-events
topic, the catalog reaches every replica). And a processor replaced by one on new topics
rebuilds its features from the archive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.parquet_event_archive import ParquetEventArchive
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.features.engine import FeatureEngine
from shopper.services.feature_backfill import backfill
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S
from tests.unit.factories import domain, publish
from tests.unit.test_feature_replicas import expected, online, shop

pytestmark = pytest.mark.kafka

WAVES = 8  # the events arrive over a few seconds, while the group settles on two members
DEADLINE_S = 60.0


@pytest.fixture
def replicas(
    kafka_broker: str, kafka_prefix: str, redis_url: str
) -> Iterator[tuple[list[System], InMemoryFeatureStore]]:
    """Kafka and Redis as in production (processor state shared through Redis, so an
    event is applied once across the group); the feature store is the in-memory one,
    shared, so the test reads exactly what each replica pushed."""
    store = InMemoryFeatureStore()
    config = load_config(
        {},
        stream_url=f"kafka://{kafka_broker}",
        cache_url=redis_url,
        topic_prefix=kafka_prefix,
        group_session_timeout_s=TEST_SESSION_TIMEOUT_S,
        microbatch_wait_s=0.01,
        feature_store="memory",
        feature_log_sample=0.0,
    )
    systems = [build_system(config) for _ in range(2)]
    for system in systems:
        assert system.features is not None
        system.features.open_store = lambda: store
    try:
        yield systems, store
    finally:
        for system in systems:
            system.close()


def test_replicas_on_kafka_push_the_rows_one_process_would(
    replicas: tuple[list[System], InMemoryFeatureStore],
) -> None:
    systems, store = replicas
    for system in systems:
        assert system.features is not None and system.features.start()
        system.start_processor()
    raws = shop()
    log, prefix = systems[0].event_log, systems[0].config.topic_prefix
    wave = -(-len(raws) // WAVES)
    for start in range(0, len(raws), wave):
        publish(log, prefix, *raws[start : start + wave])
        assert log.flush(10) == 0
        time.sleep(1.0)
    want = expected(raws)
    deadline = time.monotonic() + DEADLINE_S
    while online(store) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    applied = [system.runners[0].processor.stats.applied for system in systems]
    # A processor whose Redis state is new replays the catalog topic when it starts: the
    # catalog records it then reads in its batches are counted as duplicates.
    duplicates = sum(system.runners[0].processor.stats.duplicates for system in systems)
    assert sum(applied) + duplicates == len(raws) and duplicates <= len(catalog(raws))
    assert all(applied), f"one replica took the whole stream ({applied}): proves nothing"
    got = online(store)
    wrong = sorted(key for key in want if got.get(key) != want[key])
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:5]}"


def test_a_processor_redeployed_onto_new_topics_rebuilds_from_the_archive(
    kafka_broker: str, kafka_prefix: str, redis_url: str, tmp_path: Path
) -> None:
    """The first half of the shop through one deployment; then its processor is replaced
    by one on new topics (a new prefix: the item-events topic it reads holds none of the
    early records, as after retention or a redeployment), the archive holding the
    history. Its online rows equal the offline point-in-time rows of the backfill."""
    store = InMemoryFeatureStore()
    raws = shop()
    half = len(raws) // 2

    def deployment(prefix: str) -> System:
        system = build_system(
            load_config(
                {},
                stream_url=f"kafka://{kafka_broker}",
                cache_url=redis_url,
                topic_prefix=prefix,
                group_session_timeout_s=TEST_SESSION_TIMEOUT_S,
                microbatch_wait_s=0.01,
                feature_store="memory",
                feature_log_sample=0.0,
            )
        )
        assert system.features is not None
        system.features.open_store = lambda: store
        # The archive on disk, as the Parquet files a shop's processors share.
        system.features.archive = ParquetEventArchive(tmp_path / "archive")
        assert system.features.start(timeout=60)
        system.start_processor()
        return system

    def feed(system: System, part: list[dict[str, Any]]) -> None:
        publish(system.event_log, system.config.topic_prefix, *part)
        assert system.event_log.flush(10) == 0
        deadline = time.monotonic() + DEADLINE_S
        stats = system.runners[0].processor.stats
        while stats.applied + stats.duplicates < len(part):  # duplicates: see above
            assert time.monotonic() < deadline, "the processor did not take the events in"
            time.sleep(0.1)
        assert system.features is not None and system.features.flush(30)

    old = deployment(kafka_prefix)
    try:
        feed(old, raws[:half])
    finally:
        old.close()
    new = deployment(f"{kafka_prefix}v2.")
    try:
        assert new.features is not None
        assert (new.features.stats.rebuild_events, new.features.stats.state_complete) == (
            half,
            True,
        )
        feed(new, raws[half:])
    finally:
        new.close()
    archive = ParquetEventArchive(tmp_path / "archive")
    backfill(archive, store)
    got = online(store)
    assert got == expected(raws)  # one engine over the whole stream
    wrong = [
        key
        for key, row in got.items()
        if store.historical(row.view, [(row.entity_id, row.as_of)]) != [row]
    ]
    assert not wrong, f"{len(wrong)} online rows differ from offline, e.g. {wrong[:5]}"
    # The control: the new deployment's item feed alone lacks the first half.
    fresh = FeatureEngine()
    items_after = fresh.rows(fresh.apply(domain(r) for r in raws[half:]) & set(got_items(got)))
    assert any(got[(r.view, r.entity_id)] != r for r in items_after)


def catalog(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [raw for raw in raws if raw["type"] == "item_upsert"]


def got_items(rows: dict[tuple[str, str], Any]) -> list[tuple[str, str]]:
    return [("item", entity) for view, entity in rows if view == "product_stats"]
