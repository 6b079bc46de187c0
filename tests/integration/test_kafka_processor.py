"""The processor on Kafka (the tansu broker), end to end through the composition root.

The cache stays in memory; only the stream is Kafka. Each test has its own topics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    RecommendationList,
    ScoredItem,
    Source,
)
from shopper.domain.segment import GLOBAL_SEGMENT
from shopper.ports.cache import ListKey
from shopper.ports.event_log import EventConsumer, Record
from shopper.services.processor import Processor, ProcessorSettings
from shopper.services.runtime import ApiServer, free_port
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S, tansu_broker
from tests.helpers import ShopHttp, ids, keyed, view

pytestmark = pytest.mark.kafka

WAIT_S = 20.0  # a consumer's first group join takes about a second on tansu
SPOOL = 8


def kafka_system(address: str, prefix: str, **overrides: Any) -> System:
    config = load_config(
        {},
        stream_url=f"kafka://{address}",
        topic_prefix=prefix,
        group_session_timeout_s=TEST_SESSION_TIMEOUT_S,
        microbatch_wait_s=0.01,
        popular_refresh_s=0.1,
        **overrides,
    )
    return build_system(config)


@contextmanager
def open_shop(system: System) -> Iterator[ShopHttp]:
    app = system.app()
    with (
        ApiServer(app) as url,
        httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as http,
    ):
        yield ShopHttp(system, http)


@pytest.fixture
def shop(kafka_broker: str, kafka_prefix: str) -> Iterator[ShopHttp]:
    system = kafka_system(kafka_broker, kafka_prefix)
    try:
        system.start_processor()
        with open_shop(system) as shop:
            yield shop
    finally:
        system.close()


def wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def crowd(shop: ShopHttp) -> int:
    total = shop.post_crowd()
    wait_for(f"{total} events applied", lambda: shop.applied() >= total)
    return total


def read_all(consumer: EventConsumer, want: int, settle_s: float = 0.5) -> list[Record]:
    """Poll until `want` records are in (bounded), then a little longer to catch extras."""
    got: list[Record] = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll(100, 0.2)
    settle = time.monotonic() + settle_s
    while time.monotonic() < settle:
        got += consumer.poll(100, 0.1)
    return got


def test_posted_events_come_back_as_lists(shop: ShopHttp) -> None:
    crowd(shop)
    shop.accept(view("me-1", "a", user_id="me"))
    deadline = time.monotonic() + WAIT_S
    while (body := shop.page(user_id="me"))["source"] != "personalized":
        assert time.monotonic() < deadline, f"no personalized list; last: {body}"
        time.sleep(0.02)
    assert ids(body)[0] == "b", "a shopper viewing a gets what a's viewers viewed next"
    assert "a" not in ids(body)[:1]


def test_a_bad_record_goes_to_the_dead_letters_and_its_neighbours_are_applied(
    shop: ShopHttp,
) -> None:
    system, c = shop.system, shop.system.config
    bad = [b"{not json", json.dumps({"event_id": "x", "type": "view"}).encode()]
    good = [view("g-1", "a", user_id="good"), view("g-2", "b", user_id="good")]
    # Straight onto the stream, interleaved in one partition, as a foreign producer might.
    system.event_log.publish(c.events_topic, "good", json.dumps(good[0]).encode())
    for value in bad:
        system.event_log.publish(c.events_topic, "good", value)
    system.event_log.publish(c.events_topic, "good", json.dumps(good[1]).encode())
    assert system.event_log.flush(10) == 0

    stats = system.runners[0].processor.stats
    wait_for("2 dead letters and 2 applied", lambda: (stats.dead_letters, stats.applied) == (2, 2))
    assert system.state.sessions(["u:good"])["u:good"].interactions == 2

    reader = system.event_log.subscribe([c.dead_letter_topic], c.topic_prefix + "dlq-reader")
    try:
        letters = [json.loads(r.value) for r in read_all(reader, 2)]
    finally:
        reader.close()
    reasons = {letter["value"].encode(): letter["reason"] for letter in letters}
    assert sorted(reasons) == sorted(bad)
    assert "Invalid JSON" in reasons[bad[0]]
    assert "ts: Field required" in reasons[bad[1]]
    assert all(letter["topic"] == c.events_topic for letter in letters)


# What the crowd plus "me viewed a" must leave behind, counted once per event.
INTERACTIONS = {**{f"u:o{n}": 2 for n in range(3)}, **{f"u:p{n}": 2 for n in range(5)}, "u:me": 1}
POPULARITY = {"a": 4.0, "b": 3.0, "c": 5.0, "d": 5.0}  # one view weighs 1.0


def effects(system: System) -> tuple[dict[str, int], dict[str, float]]:
    sessions = system.state.sessions(INTERACTIONS)
    popular = dict(system.state.popular(GLOBAL_SEGMENT, 10))
    return {s: sessions[s].interactions for s in INTERACTIONS}, popular


def counted_once(system: System) -> bool:
    # Popularity is read through a cache that may lag for a second, hence a polled check.
    interactions, popular = effects(system)
    return interactions == INTERACTIONS and popular == pytest.approx(POPULARITY, rel=1e-3)


def test_redelivered_records_change_nothing(shop: ShopHttp) -> None:
    total = crowd(shop) + 1
    shop.accept(view("me-1", "a", user_id="me"))
    wait_for("every event counted once", lambda: counted_once(shop.system), timeout=5)
    assert shop.applied() == total

    # A member of a new group reads the whole stream again: every record is a redelivery.
    system, c = shop.system, shop.system.config
    consumer = system.event_log.subscribe(
        [c.events_topic, c.catalog_topic], c.topic_prefix + "replay"
    )
    settings = ProcessorSettings(dead_letter_topic=c.dead_letter_topic, wait_s=0.05)
    replay = Processor(
        consumer, system.event_log, system.state, system.cache, system.clock, settings
    )
    try:
        # First polled without committing, then rewound: the same records once more.
        first = read_all(consumer, total, settle_s=0)
        assert len(first) == total
        replay.rewind()
        deadline = time.monotonic() + WAIT_S
        while replay.stats.records < total and time.monotonic() < deadline:
            replay.run_once()
    finally:
        replay.close()
    assert replay.stats.records == total
    assert (replay.stats.duplicates, replay.stats.applied) == (total, 0)
    time.sleep(1.5)  # longer than the state's ranking cache may lag
    interactions, popular = effects(system)
    assert interactions == INTERACTIONS
    assert popular == pytest.approx(POPULARITY, rel=1e-3)
    assert shop.applied() == total, "the group's own processor applied nothing twice"


def test_a_broker_outage_spools_events_then_answers_429_and_delivers_on_return(
    kafka_prefix: str,
) -> None:
    port = free_port()  # nothing listens here until the broker is started below
    system = kafka_system(f"127.0.0.1:{port}", kafka_prefix, spool_max_events=SPOOL)
    broker = ExitStack()
    try:
        system.start_processor()
        seeded = RecommendationList(
            (ScoredItem("x", 0.9), ScoredItem("y", 0.8)),
            DEFAULT_VARIANT,
            Source.PERSONALIZED,
            time.time(),
            "seeded",
        )
        system.cache.write_lists([(ListKey("u:me", DEFAULT_VARIANT), seeded)])
        with open_shop(system) as shop:
            accepted = spool_until_full(shop)
            broker.enter_context(tansu_broker(port))
            wait_for("spooled events applied", lambda: shop.applied() == len(accepted))
            events = delivered_event_ids(system, len(accepted))
            assert sorted(events) == sorted(accepted), "each accepted event delivered once"
            shop.accept(view("after", "c", user_id="me"))  # the spool has room again
            wait_for("the next event applied", lambda: shop.applied() == len(accepted) + 1)
    finally:
        system.close()  # while the broker is still up, so the consumer leaves cleanly
        broker.close()


def test_events_accepted_in_an_outage_survive_a_restart_of_the_api(
    kafka_prefix: str, tmp_path: Path
) -> None:
    """The API stops while the broker is still away: the events it accepted wait in the
    disk spool, and the next process on that data folder delivers them once it is back."""
    port = free_port()  # nothing listens here until the broker is started below
    address = f"127.0.0.1:{port}"
    accepted = [view(f"down-{n}", "a", user_id="me") for n in range(6)]
    first = kafka_system(address, kafka_prefix, data_dir=tmp_path)
    try:
        with open_shop(first) as shop:
            shop.accept(*accepted)
    finally:
        first.close()  # the broker never came: the spool goes to disk
    assert list((tmp_path / "spool").glob("*.spool")), "nothing kept on disk"
    with tansu_broker(port):
        second = kafka_system(address, kafka_prefix, data_dir=tmp_path)
        try:
            events = delivered_event_ids(second, len(accepted))
            assert sorted(events) == sorted(e["event_id"] for e in accepted)
            wait_for(
                "the spool file removed", lambda: not list((tmp_path / "spool").glob("*.spool"))
            )
        finally:
            second.close()


def test_events_past_the_spool_timeout_wait_on_disk_and_are_sent_on_return(
    kafka_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopper.adapters import kafka_event_log

    monkeypatch.setattr(kafka_event_log, "RESEND_EVERY_S", 0.2)
    port = free_port()
    address = f"127.0.0.1:{port}"
    system = kafka_system(address, kafka_prefix, data_dir=tmp_path, spool_timeout_s=0.5)
    log = system.event_log
    assert isinstance(log, kafka_event_log.KafkaEventLog)
    try:
        with open_shop(system) as shop:
            shop.accept(*[view(f"late-{n}", "a", user_id="me") for n in range(4)])
            wait_for(
                "the timed-out events kept on disk",
                lambda: log.flush(0.1) == 0 and log.spooled == 4,
            )
            assert log.failed == 0
            # What an operator sees meanwhile:
            stream = shop.http.get("/v1/stats").json()["stream"]
            assert stream == {
                "waiting": 0,
                "kept_on_disk": 4,
                "sent_again": 0,
                "lost": 0,
                "impressions_dropped": 0,
            }
            with tansu_broker(port):
                wait_for("the events sent again", lambda: log.resent == 4)
                assert shop.http.get("/v1/stats").json()["stream"]["sent_again"] == 4
                assert sorted(delivered_event_ids(system, 4)) == [f"late-{n}" for n in range(4)]
                system.close()
    finally:
        system.close()


def delivered_event_ids(system: System, want: int) -> list[str]:
    """The event ids on the events topic, read by a group of the test's own."""
    c = system.config
    reader = system.event_log.subscribe([c.events_topic], c.topic_prefix + "audit")
    try:
        return [json.loads(r.value)["event_id"] for r in read_all(reader, want)]
    finally:
        reader.close()


def spool_until_full(shop: ShopHttp) -> list[str]:
    """With no broker: POSTs are accepted into the spool until it is full, then 429; the page
    keeps answering from the cache all along. Returns the accepted event ids."""
    accepted: list[str] = []
    for n in range(5):
        started = time.monotonic()
        shop.accept(view(f"down-{n}", "a", user_id="me"))
        assert time.monotonic() - started < 1.0, "a POST waited for the broker"
        accepted.append(f"down-{n}")
    assert shop.page(user_id="me")["list_id"] == "seeded"

    batch = [view(f"burst-{n}", "b", user_id="me") for n in range(10)]
    full = shop.post(*batch)
    assert full.status_code == 429, full.text
    body = full.json()
    assert f"spool_max_events={SPOOL}" in body["detail"] and "retry" in body["detail"]
    assert body["accepted"] == SPOOL - 5
    assert body["not_accepted"] == [e["event_id"] for e in batch[SPOOL - 5 :]]
    assert full.headers["retry-after"] == "1"
    accepted += [e["event_id"] for e in batch[: SPOOL - 5]]

    assert shop.post(view("late", "c", user_id="me")).status_code == 429
    assert shop.page(user_id="me")["list_id"] == "seeded", "the page kept its cached list"
    assert shop.applied() == 0
    return accepted
