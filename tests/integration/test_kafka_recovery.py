"""A broker that comes back without its topics (tansu's memory storage forgets them on a
restart): the producer's topic keeper creates them again, what it held is delivered, the
consumer group reads on, and readiness says what was wrong meanwhile."""

from __future__ import annotations

import time

import pytest

from shopper.adapters.kafka_event_log import KafkaEventLog, KafkaSettings
from shopper.services.runtime import free_port
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S, tansu_broker

pytestmark = pytest.mark.kafka


def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_records_held_while_the_broker_lost_its_topics_are_delivered(kafka_prefix: str) -> None:
    port = free_port()
    topic = f"{kafka_prefix}events"
    settings = KafkaSettings(
        f"127.0.0.1:{port}", partitions=2, session_timeout_s=TEST_SESSION_TIMEOUT_S
    )
    seen: set[bytes] = set()
    with tansu_broker(port):
        log = KafkaEventLog(settings, [topic])
        consumer = log.subscribe([topic], f"{kafka_prefix}g")
        for n in range(20):
            log.publish(topic, f"k{n}", b"before-%d" % n)
        assert log.flush(10) == 0

        def read() -> bool:
            seen.update(r.value for r in consumer.poll(100, 0.2))
            consumer.commit()
            return len(seen) >= 20

        until(read, 30, "the first records were not read")
        assert log.readiness() is None
    try:
        for n in range(20):  # accepted while the broker is away
            log.publish(topic, f"k{n}", b"during-%d" % n)
        until(lambda: log.readiness() is not None, 10, "readiness did not notice")
        reason = log.readiness()
        assert reason is not None and topic in reason, reason
        with tansu_broker(port):  # back, without any topic
            for n in range(20):
                log.publish(topic, f"k{n}", b"after-%d" % n)
            expected = {b"%s-%d" % (w, n) for w in (b"during", b"after") for n in range(20)}

            def delivered() -> bool:
                seen.update(r.value for r in consumer.poll(100, 0.2))
                consumer.commit()
                return expected <= seen

            until(delivered, 60, f"not delivered: {sorted(expected - seen)[:5]}")
            until(lambda: log.readiness() is None, 10, f"not ready: {log.readiness()}")
            assert log.delivery_stats()["waiting"] == 0
            assert log._topics.recreated >= 1
    finally:
        consumer.close()
        log.close()
