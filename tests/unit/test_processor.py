"""The stream processor, driven one micro-batch at a time over the embedded adapters."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList, Source
from shopper.ports.cache import ListKey
from shopper.services import processor as processor_module
from shopper.services.processor import Processor, ProcessorSettings
from tests.unit.factories import drain, in_catalog, publish, sold_out, view, wire


@pytest.fixture
def system() -> Iterator[System]:
    config = load_config({}, microbatch_wait_s=0, popular_refresh_s=0)
    built = build_system(config, clock=ManualClock())
    in_catalog(built.state)
    yield built
    built.close()


@pytest.fixture
def processor(system: System) -> Processor:
    return system.processor()


def send(system: System, *raws: dict[str, Any]) -> None:
    publish(system.event_log, system.config.topic_prefix, *raws)


def fresh_list(system: System, subject: str) -> RecommendationList | None:
    return system.cache.read_page(ListKey(subject, DEFAULT_VARIANT), []).fresh


def popular_list(system: System, segment: str) -> RecommendationList | None:
    lists = system.cache.read_page(None, [segment]).popular
    return lists[0] if lists else None


def must(rec: RecommendationList | None) -> RecommendationList:
    assert rec is not None, "expected a list in the cache"
    return rec


def interactions(system: System, subject: str) -> int:
    return system.state.sessions([subject])[subject].interactions


def log_of(system: System) -> InMemoryEventLog:
    assert isinstance(system.event_log, InMemoryEventLog)
    return system.event_log


def committed(system: System) -> list[int]:
    """The processor group's committed offsets on the events topic, by partition."""
    log = log_of(system)
    topic = system.config.events_topic
    return [log.committed(system.config.processor_group, topic, p) for p in range(log.partitions)]


def co_viewers(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """Other shoppers, each viewing a pair of items in order: they make the pairs neighbours."""
    out = []
    for n, (first, second) in enumerate(pairs):
        out += [view(f"o{n}-1", f"other{n}", first), view(f"o{n}-2", f"other{n}", second)]
    return out


def test_events_become_a_personalized_list_in_the_cache(
    system: System, processor: Processor
) -> None:
    send(system, *co_viewers(("a", "b"), ("a", "b"), ("c", "d")), view("me-1", "me", "a"))
    assert drain(system, processor) == 7
    rec = fresh_list(system, "u:me")
    assert rec is not None
    assert rec.source is Source.PERSONALIZED
    assert rec.variant == DEFAULT_VARIANT
    assert rec.list_id
    assert rec.item_ids()[0] == "b"
    # "d" is only popular, "c" and "d" are no neighbours of "a": "b" outranks them.
    assert set(rec.item_ids()) >= {"c", "d"}
    assert processor.stats.applied == 7
    assert processor.stats.lists_written >= 1


def test_anonymous_sessions_get_their_own_list(system: System, processor: Processor) -> None:
    send(system, *co_viewers(("a", "b")), wire("s-1", session_id="anon", item_id="a"))
    drain(system, processor)
    rec = fresh_list(system, "s:anon")
    assert rec is not None
    assert rec.item_ids()[0] == "b"


def test_the_same_event_twice_changes_nothing(system: System, processor: Processor) -> None:
    first, second = view("e1", "me", "a"), view("e2", "me", "b")
    send(system, first, second, first)
    drain(system, processor)
    sessions = interactions(system, "u:me")
    popular = system.state.popular("global", 10)
    neighbours = system.state.neighbours("a", 10)
    assert sessions == 2
    assert dict(popular) == pytest.approx({"a": 1.0, "b": 1.0})

    send(system, first, second)
    drain(system, processor)
    assert interactions(system, "u:me") == sessions
    assert system.state.popular("global", 10) == popular
    assert system.state.neighbours("a", 10) == neighbours
    assert processor.stats.duplicates == 3
    assert processor.stats.applied == 2


def test_a_bad_record_is_dead_lettered_and_its_neighbours_applied(
    system: System, processor: Processor
) -> None:
    topic = system.config.events_topic
    send(system, view("e1", "me", "a"))
    log_of(system).publish(topic, "u:me", b"{not json")
    log_of(system).publish(topic, "u:me", json.dumps(wire("e2", "teleport", user_id="me")).encode())
    send(system, view("e3", "me", "b"))
    drain(system, processor)

    assert interactions(system, "u:me") == 2
    assert processor.stats.dead_letters == 2
    inspector = system.event_log.subscribe([system.config.dead_letter_topic], "inspector")
    letters = [json.loads(r.value) for r in inspector.poll(10, 0)]
    assert [(letter["topic"], letter["offset"]) for letter in letters] == [(topic, 1), (topic, 2)]
    assert letters[0]["value"] == "{not json"
    assert "json" in letters[0]["reason"].lower()
    assert "type:" in letters[1]["reason"]
    assert "teleport" in letters[1]["value"]
    # The bad records do not block the partition: everything is committed.
    assert committed(system) == log_of(system).end_offsets(topic)


class RecordingCache(InMemoryRecommendationCache):
    """Notes the committed offsets at the moment lists are written; can fail once."""

    def __init__(self, system: System, fail_once: bool = False) -> None:
        super().__init__(system.clock, 900.0, 86400.0)
        self._system = system
        self.fail_once = fail_once
        self.committed_at_write: list[list[int]] = []

    def write_lists(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        self.committed_at_write.append(committed(self._system))
        if self.fail_once:
            self.fail_once = False
            raise ConnectionError("cache went away")
        super().write_lists(lists)


def processor_with(system: System, cache: RecordingCache) -> Processor:
    config = system.config
    consumer = system.event_log.subscribe(
        [config.events_topic, config.catalog_topic], config.processor_group
    )
    settings = ProcessorSettings(config.dead_letter_topic, wait_s=0, popular_refresh_s=0)
    return Processor(consumer, system.event_log, system.state, cache, system.clock, settings)


def test_offsets_are_committed_only_after_the_lists_are_written(system: System) -> None:
    cache = RecordingCache(system)
    processor = processor_with(system, cache)
    send(system, view("e1", "me", "a"), view("e2", "you", "b"))
    processor.run_once()
    log = log_of(system)
    assert cache.committed_at_write == [[0] * log.partitions]
    assert committed(system) == log.end_offsets(system.config.events_topic)
    assert sum(committed(system)) == 2


def test_a_new_group_member_resumes_from_the_committed_offset(
    system: System, processor: Processor
) -> None:
    send(system, view("e1", "me", "a"), view("e2", "me", "b"))
    drain(system, processor)
    processor.close()

    send(system, view("e3", "me", "c"))
    successor = system.processor()
    assert drain(system, successor) == 1
    assert successor.stats.duplicates == 0
    assert interactions(system, "u:me") == 3


def test_a_closed_member_hands_uncommitted_records_to_the_next(system: System) -> None:
    cache = RecordingCache(system, fail_once=True)
    failing = processor_with(system, cache)
    send(system, view("e1", "me", "a"))
    with pytest.raises(ConnectionError):
        failing.run_once()
    failing.close()
    successor = system.processor()
    assert drain(system, successor) == 1
    rec = fresh_list(system, "u:me")
    assert rec is not None


def test_rewind_after_a_failure_replays_without_double_effects(system: System) -> None:
    cache = RecordingCache(system, fail_once=True)
    processor = processor_with(system, cache)
    send(system, view("e1", "me", "a"), view("e2", "me", "b"), view("e3", "you", "a"))
    with pytest.raises(ConnectionError):
        processor.run_once()
    assert sum(committed(system)) == 0

    processor.rewind()
    assert drain(system, processor) == 3
    assert interactions(system, "u:me") == 2
    assert interactions(system, "u:you") == 1
    assert dict(system.state.popular("global", 10)) == pytest.approx({"a": 2.0, "b": 1.0})
    assert sum(committed(system)) == 3


def test_rewind_after_a_failed_cache_write_still_writes_the_lists(system: System) -> None:
    cache = RecordingCache(system, fail_once=True)
    processor = processor_with(system, cache)
    send(system, view("e1", "me", "a"))
    with pytest.raises(ConnectionError):
        processor.run_once()
    processor.rewind()
    drain(system, processor)
    rec = cache.read_page(ListKey("u:me", DEFAULT_VARIANT), []).fresh
    assert rec is not None, "the list lost with the failed write must be written on replay"
    assert rec.source is Source.PERSONALIZED


@pytest.mark.parametrize(
    "gone",
    [
        sold_out("x-gone", "b"),
        wire("x-gone", "item_upsert", item={"item_id": "b", "title": "B", "stock": 0}),
    ],
    ids=["stock_change", "item_upsert"],
)
def test_sold_out_items_leave_the_lists_written_afterwards(
    system: System, processor: Processor, gone: dict[str, Any]
) -> None:
    send(system, *co_viewers(("a", "b"), ("a", "c")), view("me-1", "me", "a"))
    drain(system, processor)
    before = fresh_list(system, "u:me")
    assert before is not None and "b" in before.item_ids()
    assert "b" in must(popular_list(system, "global")).item_ids()

    send(system, gone, view("me-2", "me", "a"))
    drain(system, processor)
    after = fresh_list(system, "u:me")
    assert after is not None
    assert after.list_id != before.list_id
    assert "b" not in after.item_ids()
    assert "c" in after.item_ids()
    global_popular = popular_list(system, "global")
    assert global_popular is not None
    assert "b" not in global_popular.item_ids()
    assert "c" in global_popular.item_ids()


def test_an_item_back_in_stock_returns(system: System, processor: Processor) -> None:
    send(system, *co_viewers(("a", "b")), sold_out("x1", "b"), view("me-1", "me", "a"))
    drain(system, processor)
    assert "b" not in must(fresh_list(system, "u:me")).item_ids()
    send(system, wire("x2", "stock_change", item_id="b", quantity=3), view("me-2", "me", "a"))
    drain(system, processor)
    assert "b" in must(fresh_list(system, "u:me")).item_ids()


def test_price_changes_update_the_catalog(system: System, processor: Processor) -> None:
    send(
        system,
        wire("u1", "item_upsert", item={"item_id": "a", "title": "A", "price": 10.0, "stock": 4}),
        wire("p1", "price_change", item_id="a", price=7.5),
    )
    drain(system, processor)
    item = system.state.items(["a"])["a"]
    assert (item.title, item.price, item.stock) == ("A", 7.5, 4)


def test_popular_lists_are_written_per_segment(system: System, processor: Processor) -> None:
    german_phone = {"country": "DE", "device": "Mobile"}
    send(
        system,
        view("e1", "hans", "a", context=german_phone),
        view("e2", "hans", "b"),  # the shopper's segments stick to them
        view("e3", "marie", "c", context={"country": "FR"}),
        view("e4", "marie", "c"),
    )
    drain(system, processor)

    lists = {
        segment: must(popular_list(system, segment))
        for segment in ["global", "country:de", "device:mobile", "country:fr"]
    }
    for segment, rec in lists.items():
        assert rec.source is Source.POPULAR
        assert rec.list_id == f"popular:{segment}"
    assert set(lists["country:de"].item_ids()) == {"a", "b"}
    assert set(lists["device:mobile"].item_ids()) == {"a", "b"}
    assert lists["country:fr"].item_ids() == ["c"]
    assert lists["global"].item_ids() == ["c", "a", "b"]
    assert popular_list(system, "device:desktop") is None


def test_a_list_reflects_co_occurrences_recorded_in_earlier_batches(
    system: System, processor: Processor
) -> None:
    # Each event in its own micro-batch: other1 views a, then b; then I view a.
    for raw in [view("o-1", "other1", "a"), view("o-2", "other1", "b"), view("me-1", "me", "a")]:
        send(system, raw)
        drain(system, processor)
    assert must(fresh_list(system, "u:me")).item_ids()[0] == "b"


def test_popular_lists_follow_the_events_after_the_first_refresh(
    system: System, processor: Processor
) -> None:
    processor.run_once()  # an idle start: the (empty) popular lists are written once
    send(system, view("e1", "ann", "a"))
    drain(system, processor)
    assert must(popular_list(system, "global")).item_ids() == ["a"]

    send(system, *(view(f"b{n}", f"fan{n}", "b") for n in range(3)))
    drain(system, processor)
    assert must(popular_list(system, "global")).item_ids() == ["b", "a"]


def test_a_batch_is_ranked_and_written_a_chunk_at_a_time_the_first_to_act_first(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shopper's list is on the page once their chunk is written, before the rest of a
    large micro-batch is ranked."""
    monkeypatch.setattr(processor_module, "LIST_CHUNK", 2)
    cache = RecordingCache(system)
    processor = processor_with(system, cache)
    written: list[list[str]] = []
    shown_when_ranked: list[bool] = []
    write_lists, rank = cache.write_lists, processor.ranking.rank

    def noting_writes(lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        written.append([key.subject for key, _ in lists])
        write_lists(lists)

    def noting_ranks(sessions: Sequence[Any]) -> Any:
        # Whether the first chunk's shoppers have their lists by now.
        first = written[0] if written else []
        shown = [cache.read_page(ListKey(s, DEFAULT_VARIANT), []).fresh for s in first]
        shown_when_ranked.append(bool(first) and all(shown))
        return rank(sessions)

    monkeypatch.setattr(cache, "write_lists", noting_writes)
    monkeypatch.setattr(processor.ranking, "rank", noting_ranks)
    send(system, *(view(f"e{n}", f"s{n}", "a") for n in range(5)))
    processor.run_once()
    assert [len(chunk) for chunk in written] == [2, 2, 1]
    assert sorted(s for chunk in written for s in chunk) == [f"u:s{n}" for n in range(5)]
    assert shown_when_ranked == [False, True, True]  # the first lists were out before the rest
    assert processor.stats.lists_written == 5
