"""The in-memory adapters forget what their Redis keys would: sessions, lists, event ids,
outcomes and stream records expire, and a sweep gives the memory back."""

from __future__ import annotations

import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shopper.adapters import memory_expiry
from shopper.adapters.memo import StaleMemo
from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.memory_expiry import ExpiringMap, ExpiringSet, Sweeper, sweep, trim_memory
from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.adapters.openfeature_flags import OpenFeatureFlagClient
from shopper.adapters.system_clock import ManualClock
from shopper.domain.attribution import OutcomeDelta
from shopper.domain.recommendation import RecommendationList, ScoredItem, Source
from shopper.domain.session import SessionState
from shopper.ports.cache import ListKey
from shopper.ports.processor_state import StateChanges

TTL = 10.0


def ranked(list_id: str) -> RecommendationList:
    return RecommendationList((ScoredItem("a", 1.0),), "champion", Source.PERSONALIZED, 0, list_id)


@pytest.fixture(autouse=True)
def sweeps_driven_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test drives the sweeps it counts: the adapters made here are not registered
    with the process's sweeper thread, which (started by any earlier test) would otherwise
    expire entries itself between a test's calls."""
    monkeypatch.setattr(Sweeper, "register", classmethod(lambda cls, sweep_now: None))


def test_an_expiring_map_serves_until_the_ttl_and_a_rewrite_extends_it() -> None:
    kept: ExpiringMap[str, int] = ExpiringMap(TTL)
    kept.put("a", 1, 0.0)
    kept.put("b", 2, 5.0)
    kept.put("a", 3, 6.0)  # rewritten: lives from 6 now, and expires after b
    assert kept.get("a", 16.0) == 3
    assert kept.get("b", 15.0) == 2
    assert kept.get("b", 15.5) is None  # expired, though not swept yet
    assert kept.expire(15.5) == 1
    assert list(kept.entries) == ["a"]
    assert kept.expire(16.5) == 1
    assert len(kept) == 0


def test_an_expire_stops_at_the_first_live_entry_and_frees_at_most_its_limit() -> None:
    kept: ExpiringMap[int, None] = ExpiringMap(TTL)
    for n in range(100):
        kept.put(n, None, float(n))
    assert kept.expire(60.0, limit=10) == 10  # the ten oldest (0-9)
    assert kept.expire(60.0) == 40  # 10-49; 50 is exactly TTL old and still lives
    assert next(iter(kept.entries)) == 50


def test_sweep_frees_every_expired_entry_a_chunk_at_a_time() -> None:
    maps = [ExpiringMap[int, None](TTL), ExpiringMap[int, None](TTL)]
    ids: ExpiringSet[str] = ExpiringSet(TTL)
    for n in range(5_000):
        maps[0].put(n, None, 0.0)
        maps[1].put(n, None, 0.0)
        ids.add(str(n), 0.0)
    assert sweep(threading.Lock(), TTL + 1, *maps, ids) == 15_000
    assert not maps[0] and not maps[1] and not ids


def test_the_cache_drops_a_list_after_the_longer_ttl_and_similar_lists_after_lkg() -> None:
    clock = ManualClock()
    cache = InMemoryRecommendationCache(clock, fresh_ttl_s=5.0, lkg_ttl_s=TTL)
    alice = ListKey("u:alice", "champion")
    cache.write_lists([(alice, ranked("l1"))])
    cache.write_similar([("a", ranked("s1"))])
    clock.advance(6.0)
    page = cache.read_page(alice, [])
    assert page.fresh is None and page.last_known_good == ranked("l1")
    assert cache.sweep() == 0
    clock.advance(4.5)
    assert cache.read_page(alice, []).last_known_good is None
    assert cache.read_similar("a") == (None, frozenset())
    assert cache.list_age(alice) is None
    assert cache.sweep() == 2  # the list and the similar list
    assert cache.sweep() == 0


def test_state_forgets_sessions_outcomes_and_event_ids_after_their_ttls() -> None:
    clock = ManualClock()
    state = InMemoryProcessorState(3600.0, clock=clock, session_ttl_s=TTL, dedup_ttl_s=5.0)
    seen = SessionState("u:1", interactions=3)
    state.apply(
        StateChanges(
            event_ids=["e1"],
            sessions={"u:1": seen},
            outcomes={"u:1": OutcomeDelta("champion", impressions=2)},
        )
    )
    clock.advance(5.5)
    assert state.applied(["e1"]) == {"e1"}  # remembered until swept, as a Redis bucket is
    assert state.sweep() == 1
    assert state.applied(["e1"]) == set()
    assert state.sessions(["u:1"])["u:1"].interactions == 3
    assert [o.impressions for o in state.outcomes()] == [2]

    clock.advance(5.0)  # 10.5 s since the session's last change
    assert state.sessions(["u:1"])["u:1"].interactions == 0
    assert state.outcomes() == []
    assert state.sweep() == 2
    # An expired session's outcome counts afresh, as its Redis hash would.
    state.apply(StateChanges(outcomes={"u:1": OutcomeDelta("champion", impressions=1)}))
    assert [o.impressions for o in state.outcomes()] == [1]


def test_a_session_changed_again_lives_a_ttl_from_its_last_change() -> None:
    clock = ManualClock()
    state = InMemoryProcessorState(3600.0, clock=clock, session_ttl_s=TTL)
    state.apply(StateChanges(sessions={"u:1": SessionState("u:1", interactions=1)}))
    clock.advance(8.0)
    state.apply(StateChanges(sessions={"u:1": SessionState("u:1", interactions=2)}))
    clock.advance(8.0)
    assert state.sweep() == 0
    assert state.sessions(["u:1"])["u:1"].interactions == 2


def test_the_stream_keeps_at_most_max_records_a_partition() -> None:
    log = InMemoryEventLog(partitions=1, max_records=3)
    for n in range(5):
        log.publish("t", "k", f"v{n}".encode())
    assert log.start_offsets("t") == [2]
    assert log.end_offsets("t") == [5]
    consumer = log.subscribe(["t"], "g", from_start=True)
    assert [r.offset for r in consumer.poll(10, 0)] == [2, 3, 4]


def test_a_consumer_behind_retention_skips_to_the_oldest_record_kept() -> None:
    log = InMemoryEventLog(partitions=1, max_records=2_000)
    consumer = log.subscribe(["t"], "g")
    for n in range(6_000):  # the dropped records' memory is let go on the way
        log.publish("t", "k", f"v{n}".encode())
    assert log.start_offsets("t") == [4_000]
    assert consumer.lag() == {("t", 0): 6_000}  # the records it missed count until read
    got = consumer.poll(5, 0)
    assert [r.offset for r in got] == [4_000, 4_001, 4_002, 4_003, 4_004]
    assert [r.value for r in got[:1]] == [b"v4000"]
    consumer.commit()
    assert log.committed("g", "t", 0) == 4_005


def test_the_stream_drops_records_older_than_its_retention() -> None:
    log = InMemoryEventLog(partitions=1, retention_s=0.05)
    consumer = log.subscribe(["t"], "g")
    log.publish("t", "k", b"old")
    time.sleep(0.1)
    assert log.expire() == 1  # the sweep, for a log nobody publishes to
    assert log.start_offsets("t") == log.end_offsets("t") == [1]
    log.publish("t", "k", b"new")
    assert [r.value for r in consumer.poll(10, 0)] == [b"new"]


@pytest.mark.parametrize("idle", [True, False])
def test_a_memo_is_emptied_only_once_idle(idle: bool) -> None:
    memo = StaleMemo(0.05)
    memo.get("a", 1, lambda key, n: [(key, 1.0)])
    if idle:
        time.sleep(0.1)
    memo.expire()
    calls: list[str] = []

    def read(key: str, n: int) -> list[tuple[str, float]]:
        calls.append(key)
        return [(key, 1.0)]

    memo.get("a", 1, read)
    assert calls == (["a"] if idle else [])


def test_the_flag_clients_assignments_are_forgotten_after_their_ttl(tmp_path: Path) -> None:
    flags = OpenFeatureFlagClient(tmp_path / "flags.json", cache_size=2, cache_ttl_s=0.05)
    try:
        for subject in ("u:1", "u:2", "u:3"):
            assert flags.assign(subject).variant == "champion"
        assert flags.expire_cache() == 0  # the oldest went past cache_size; two are kept
        time.sleep(0.1)
        assert flags.expire_cache() == 2
    finally:
        flags.close()


def test_the_sweeper_trims_after_many_expiries_and_collects_once_a_wave_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wave's end is when CPython's free lists, full of the wave's blocks, are emptied
    (a full collection), so its small-object arenas can go back to the system."""
    calls: list[bool] = []
    monkeypatch.setattr(memory_expiry, "trim_memory", lambda collect=False: calls.append(collect))
    sweeper = Sweeper(every_s=3600.0)  # its thread waits; the rounds are driven here
    sweeper.after_round(memory_expiry.TRIM_AFTER)  # a big sweep: trimmed at once
    assert calls == [False]
    sweeper.after_round(5)  # still expiring: nothing yet
    assert calls == [False]
    sweeper.after_round(0)  # the wave ended: trimmed, after a full collection
    assert calls == [False, True]
    sweeper.after_round(0)  # quiet: nothing more
    assert calls == [False, True]


def _ask_offsets(moment: datetime, times: int) -> None:
    burst = []  # what a burst makes between the calls, so each call's name has a new place
    for n in range(times):
        moment.utcoffset()  # C code asks the zone by a C string name
        burst.append(f"{n}")


def test_trimming_at_a_wave_end_frees_what_cpythons_caches_kept_of_the_wave() -> None:
    """`datetime` asks a zone for its offset by a C string name: each call makes a name
    string, and CPython's type attribute cache keeps hundreds of them alive, made at any
    moment of a burst. The collection at a wave's end must let them go."""
    moment = datetime.now(UTC)
    trim_memory(collect=True)
    asking = [tracemalloc.Filter(True, __file__, lineno=_ask_offsets.__code__.co_firstlineno + 3)]
    tracemalloc.start()
    try:
        _ask_offsets(moment, 50_000)
        kept = len(tracemalloc.take_snapshot().filter_traces(asking).traces)
        trim_memory(collect=True)
        left = len(tracemalloc.take_snapshot().filter_traces(asking).traces)
    finally:
        tracemalloc.stop()
    assert kept >= 20, "nothing was kept: the test shows nothing"
    assert left == 0
