"""Two processor replicas on Kafka (tansu), each with its own Kafka clients as two processes
have, sharing one feature store: every item's and shopper's online row equals what one
engine over the whole stream computes (items reach their owner through the item-events
topic, the catalog reaches every replica)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S
from tests.unit.factories import publish
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
    assert sum(applied) == len(raws)
    assert all(applied), f"one replica took the whole stream ({applied}): proves nothing"
    got = online(store)
    wrong = sorted(key for key in want if got.get(key) != want[key])
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:5]}"
