"""One contract for every EventLog: the in-process log and Kafka (on the tansu broker).

Kafka consumers join their group asynchronously, and tansu's high-watermarks are wrong, so
every wait here is a bounded polling loop that stops as soon as the expected records are in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.ports.event_log import EventConsumer, EventLog, Record
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S

PARTITIONS = 4
DEADLINE_S = 20.0  # generous: a Kafka group (re)join takes about a second on tansu


@dataclass
class Harness:
    """Clients of one log: `client()` is another process's view of the same log."""

    new_log: Callable[[], EventLog]
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}.")
    exact_ends: bool = True  # whether the log's end offsets (high watermarks) are right
    _logs: list[EventLog] = field(default_factory=list)
    _consumers: list[EventConsumer] = field(default_factory=list)

    def client(self) -> EventLog:
        log = self.new_log()
        self._logs.append(log)
        return log

    def topic(self, name: str = "events") -> str:
        return self.prefix + name

    def join(
        self, log: EventLog, group: str = "g", topic: str = "events", from_start: bool = False
    ) -> EventConsumer:
        consumer = log.subscribe([self.topic(topic)], self.prefix + group, from_start)
        self._consumers.append(consumer)
        return consumer

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()
        for log in self._logs:
            log.close()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        shared = InMemoryEventLog(partitions=PARTITIONS)
        made = Harness(lambda: shared)
    else:
        from shopper.adapters.kafka_event_log import KafkaEventLog, KafkaSettings

        broker: str = request.getfixturevalue("kafka_broker")
        settings = KafkaSettings(
            broker, partitions=PARTITIONS, session_timeout_s=TEST_SESSION_TIMEOUT_S
        )
        # tansu's high watermarks are wrong: its lag is only shown to be well formed.
        made = Harness(lambda: KafkaEventLog(settings), exact_ends=False)
    try:
        yield made
    finally:
        made.close()


def publish(log: EventLog, topic: str, pairs: list[tuple[str, str]]) -> None:
    for key, value in pairs:
        log.publish(topic, key, value.encode())
    assert log.flush(10) == 0, "records still waiting for the log"


def poll_until(
    consumer: EventConsumer, done: Callable[[list[Record]], bool], timeout: float = DEADLINE_S
) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        got += consumer.poll(100, 0.2)
    return got


def poll_for(consumer: EventConsumer, seconds: float) -> list[Record]:
    """Everything that arrives within `seconds` (to show that nothing more comes)."""
    got: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += consumer.poll(100, 0.1)
    return got


def values(records: list[Record]) -> list[str]:
    return [r.value.decode() for r in records]


def at_least(n: int) -> Callable[[list[Record]], bool]:
    return lambda got: len(got) >= n


def keyed(keys: int, per_key: int, tag: str = "") -> list[tuple[str, str]]:
    """`per_key` records for each of `keys` keys, interleaved: k0:0, k1:0, ..., k0:1, ..."""
    return [(f"k{k}", f"{tag}k{k}:{n}") for n in range(per_key) for k in range(keys)]


def test_one_key_keeps_its_order_in_one_partition(harness: Harness) -> None:
    log = harness.client()
    sent = keyed(keys=12, per_key=15)
    publish(log, harness.topic(), sent)
    got = poll_until(harness.join(log), at_least(len(sent)))
    assert sorted(values(got)) == sorted(v for _, v in sent)
    for key in {k for k, _ in sent}:
        mine = [r for r in got if r.key == key]
        assert len({r.partition for r in mine}) == 1, f"{key} spread over partitions"
        assert values(mine) == [v for k, v in sent if k == key], f"{key} out of order"
        assert [r.offset for r in mine] == sorted(r.offset for r in mine)
    assert len({r.partition for r in got}) > 1, "every key in one partition proves nothing"


def test_a_key_lands_on_the_same_partition_from_every_producer(harness: Harness) -> None:
    first, second = harness.client(), harness.client()
    publish(first, harness.topic(), keyed(keys=16, per_key=1, tag="first/"))
    publish(second, harness.topic(), keyed(keys=16, per_key=1, tag="second/"))
    got = poll_until(harness.join(first), at_least(32))
    assert len(got) == 32
    partitions: dict[str, set[int]] = {}
    for r in got:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions


def test_records_carry_their_key_value_and_acceptance_time(harness: Harness) -> None:
    log = harness.client()
    before = time.time()
    publish(log, harness.topic(), [("user-ü", '{"event_id": "e1"}'), ("", "no key")])
    after = time.time()
    got = poll_until(harness.join(log), at_least(2))
    assert sorted((r.key, r.value) for r in got) == [
        ("", b"no key"),
        ("user-\u00fc", b'{"event_id": "e1"}'),
    ]
    for r in got:
        assert r.topic == harness.topic()
        assert 0 <= r.partition < PARTITIONS
        assert before - 1.0 <= r.timestamp <= after + 1.0  # epoch seconds, not millis


def test_a_new_member_resumes_from_the_committed_offsets(harness: Harness) -> None:
    log = harness.client()
    publish(log, harness.topic(), keyed(keys=5, per_key=4, tag="old/"))
    first = harness.join(log)
    assert len(poll_until(first, at_least(20))) == 20
    first.commit()
    first.close()
    new = keyed(keys=5, per_key=2, tag="new/")
    publish(log, harness.topic(), new)
    second = harness.join(log)
    got = poll_until(second, at_least(len(new)))
    got += poll_for(second, 0.5)
    assert sorted(values(got)) == sorted(v for _, v in new)


def test_uncommitted_records_come_again_on_rewind_and_to_the_next_member(
    harness: Harness,
) -> None:
    log = harness.client()
    publish(log, harness.topic(), keyed(keys=5, per_key=2, tag="done/"))
    first = harness.join(log)
    assert len(poll_until(first, at_least(10))) == 10
    first.commit()
    pending = keyed(keys=5, per_key=3, tag="pending/")
    publish(log, harness.topic(), pending)
    want = sorted(v for _, v in pending)
    assert sorted(values(poll_until(first, at_least(15)))) == want

    first.rewind()
    again = poll_until(first, at_least(15))
    assert sorted(values(again)) == want, "rewind must re-poll exactly the uncommitted records"

    first.close()  # without committing: the next member gets them
    second = harness.join(log)
    redelivered = poll_until(second, at_least(15))
    redelivered += poll_for(second, 0.5)
    assert sorted(values(redelivered)) == want


def test_two_members_split_the_partitions_and_a_leaver_hands_its_share_over(
    harness: Harness,
) -> None:
    log = harness.client()
    a, b = harness.join(log), harness.join(log)
    got: dict[str, list[Record]] = {"a": [], "b": []}
    members = {"a": a, "b": b}
    sent: list[str] = []

    def step(tag: str) -> list[tuple[str, str]]:
        batch = keyed(keys=16, per_key=1, tag=f"{tag}/")
        publish(log, harness.topic(), batch)
        sent.extend(v for _, v in batch)
        return batch

    def poll_both() -> None:
        for name, member in members.items():
            got[name] += member.poll(100, 0.1)
            member.commit()

    # Keep records coming until the group has settled with work for both members.
    deadline = time.monotonic() + DEADLINE_S
    round_no = 0
    while not (got["a"] and got["b"]) and time.monotonic() < deadline:
        step(f"warmup{round_no}")
        round_no += 1
        poll_both()
    assert got["a"] and got["b"], "the second member never got a share"

    final = {v for _, v in step("split")}
    while not final <= set(values(got["a"] + got["b"])) and time.monotonic() < deadline:
        poll_both()
    assert set(sent) <= set(values(got["a"] + got["b"])), "records lost in the rebalance"
    share = {
        name: {r.partition for r in records if r.value.decode() in final}
        for name, records in got.items()
    }
    assert share["a"] and share["b"] and not share["a"] & share["b"], share
    assert share["a"] | share["b"] == set(range(PARTITIONS))

    b.close()
    del members["b"]
    handed_over = {v for _, v in step("handover")}
    rest = poll_until(a, lambda recs: handed_over <= set(values(recs)))
    assert handed_over <= set(values(rest)), "the leaver's partitions were not taken over"
    assert {r.partition for r in rest if r.value.decode() in handed_over} == set(range(PARTITIONS))


def test_a_from_start_member_reads_its_partitions_from_the_first_record(
    harness: Harness,
) -> None:
    """What the item-features group stands on: whoever is assigned a partition rebuilds
    its state from the whole partition, whatever the group committed."""
    log = harness.client()
    old = keyed(keys=8, per_key=2, tag="old/")
    publish(log, harness.topic(), old)
    first = harness.join(log, group="state", from_start=True)
    assert len(poll_until(first, at_least(16))) == 16
    first.commit()
    first.close()
    new = keyed(keys=8, per_key=1, tag="new/")
    publish(log, harness.topic(), new)
    second = harness.join(log, group="state", from_start=True)
    got = poll_until(second, at_least(24))
    got += poll_for(second, 0.5)
    assert sorted(values(got)) == sorted(v for _, v in old + new)
    # An ordinary member of that group would have resumed after the commit.
    plain = harness.join(log, group="state")
    second.close()
    resumed = poll_until(plain, at_least(8))
    resumed += poll_for(plain, 0.5)
    assert sorted(values(resumed)) == sorted(v for _, v in new)


def test_lag_is_what_a_member_has_yet_to_read(harness: Harness) -> None:
    log = harness.client()
    consumer = harness.join(log)
    sent = keyed(keys=8, per_key=2)
    publish(log, harness.topic(), sent)
    if harness.exact_ends:  # the in-process member is assigned its partitions at once
        assert sum(consumer.lag().values()) == len(sent)
    poll_until(consumer, at_least(len(sent)))
    lag = consumer.lag()
    assert {topic for topic, _ in lag} <= {harness.topic()}
    assert all(isinstance(n, int) and n >= 0 for n in lag.values())
    if harness.exact_ends:
        assert lag == {(harness.topic(), p): 0 for p in range(PARTITIONS)}
    consumer.close()
    assert consumer.lag() == {}  # a member that left reads nothing
