"""One contract for every ProcessorState: the in-memory one and Redis."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.adapters.redis_processor_state import RedisProcessorState
from shopper.adapters.system_clock import ManualClock
from shopper.domain.item import Item
from shopper.domain.ranking import cosine, forward_weight
from shopper.domain.segment import GLOBAL_SEGMENT
from shopper.domain.session import Interaction, SessionState
from shopper.ports.processor_state import ProcessorState, StateChanges

HALF_LIFE = 3600.0
T0 = 1_700_000_000.0

MakeState = Callable[..., ProcessorState]  # (half-life, settings) -> state


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_state(request: pytest.FixtureRequest) -> Iterator[MakeState]:
    if request.param == "memory":
        yield InMemoryProcessorState
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    clock = ManualClock(T0)
    made = 0

    def make(half_life: float, **settings: Any) -> ProcessorState:
        nonlocal made
        made += 1  # each state of one test gets a key space of its own
        return RedisProcessorState(client, clock, half_life, prefix=f"t{made}:", **settings)

    try:
        yield make
    finally:
        client.close()


@pytest.fixture
def state(make_state: MakeState) -> ProcessorState:
    return make_state(HALF_LIFE)


def changes(**fields: Any) -> StateChanges:
    return StateChanges(**fields)


def test_applied_reports_only_ids_already_applied(state: ProcessorState) -> None:
    assert state.applied([]) == set()
    assert state.applied(["e1"]) == set()
    state.apply(changes(event_ids=["e1", "e2"]))
    state.apply(changes(event_ids=["e3"]))
    assert state.applied(["e1", "e3", "e4"]) == {"e1", "e3"}


def test_sessions_round_trip_and_unknown_subjects_start_fresh(state: ProcessorState) -> None:
    alice = SessionState(
        subject="u:alice",
        recent=[Interaction("a", 1.0, T0), Interaction("ü-b", 3.0, T0 + 1.5)],
        cart={"ü-b": 2},
        purchased=["c"],
        dwell_ms={"a": 12_000},
        interactions=2,
        country="de",
        device="mobile",
        last_seen=T0 + 1.5,
    )
    state.apply(changes(event_ids=["e1"], sessions={"u:alice": alice}))
    got = state.sessions(["u:alice", "s:new"])
    assert got["u:alice"].to_dict() == alice.to_dict()
    assert got["s:new"].to_dict() == SessionState(subject="s:new").to_dict()

    got["u:alice"].cart["x"] = 1  # callers own what they get back
    assert "x" not in state.sessions(["u:alice"])["u:alice"].cart


def test_items_round_trip_and_unknown_items_are_left_out(state: ProcessorState) -> None:
    full = Item(
        "sku-1",
        title="Rain jacket",
        category=("apparel", "outdoor"),
        brand="Acme",
        price=59.9,
        stock=0,
        attributes={"colour": "grün"},
        created_at=T0 - 10,
    )
    bare = Item("sku-2")
    state.apply(changes(items={"sku-1": full, "sku-2": bare}))
    assert state.items(["sku-1", "sku-2", "sku-3"]) == {"sku-1": full, "sku-2": bare}
    assert not state.items(["sku-1"])["sku-1"].in_stock
    state.apply(changes(items={"sku-1": Item("sku-1", stock=3)}))
    assert state.items(["sku-1"])["sku-1"].stock == 3


# Popularity and neighbours may be answered from a copy up to a second old (both states
# remember answers for the processor's sake), so each test reads after all its writes.


def test_popularity_ranks_by_decayed_weight(state: ProcessorState) -> None:
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "old", 3.0, T0)]))
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "recent", 2.0, T0 + HALF_LIFE)]))
    # One half-life later, 3 counts as 1.5: the recent 2 wins.
    top = state.popular(GLOBAL_SEGMENT, 10)
    assert [i for i, _ in top] == ["recent", "old"]
    assert top[0][1] / top[1][1] == pytest.approx(2.0 * 2 / 3.0)


def test_decayed_hits_add_up(state: ProcessorState) -> None:
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "old", 3.0, T0)]))
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "recent", 2.0, T0 + HALF_LIFE)]))
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "old", 1.0, T0 + HALF_LIFE)]))
    top = state.popular(GLOBAL_SEGMENT, 2)
    assert [i for i, _ in top] == ["old", "recent"]  # 1.5 + 1 against 2
    assert top[0][1] / top[1][1] == pytest.approx(2.5 / 2.0)


def test_popularity_is_per_segment(state: ProcessorState) -> None:
    state.apply(
        changes(
            hits=[
                ("country:de", "a", 1.0, T0),
                ("country:de", "b", 2.0, T0),
                (GLOBAL_SEGMENT, "c", 1.0, T0),
            ]
        )
    )
    assert [i for i, _ in state.popular("country:de", 10)] == ["b", "a"]
    assert [i for i, _ in state.popular(GLOBAL_SEGMENT, 10)] == ["c"]
    assert state.popular("device:tv", 10) == []
    assert state.popular("country:de", 0) == []


def test_popularity_ties_go_to_the_larger_id(state: ProcessorState) -> None:
    state.apply(changes(hits=[(GLOBAL_SEGMENT, i, 1.0, T0) for i in ["b", "a", "c"]]))
    assert [i for i, _ in state.popular(GLOBAL_SEGMENT, 3)] == ["c", "b", "a"]


def test_popularity_survives_a_rescale_far_past_the_landmark(make_state: MakeState) -> None:
    state = make_state(1.0)
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "a", 1.0, T0), (GLOBAL_SEGMENT, "b", 4.0, T0)]))
    later = T0 + 600  # 600 half-lives: a rescale, or 2**600 stored scores
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "c", 1.0, later)]))
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "a", 2.0, later + 1)]))
    top = state.popular(GLOBAL_SEGMENT, 3)
    assert [i for i, _ in top] == ["a", "c", "b"]
    assert all(math.isfinite(s) and s < 1e6 for _, s in top)
    scores = dict(top)
    assert scores["a"] / scores["c"] == pytest.approx(4.0)  # 2 one half-life after 1
    assert scores["b"] / scores["c"] == pytest.approx(4.0 * 2.0**-600)


def test_neighbours_by_cosine_over_volume(state: ProcessorState) -> None:
    # Volume is interest in the global segment; co-occurrence counts both directions.
    hits = [(GLOBAL_SEGMENT, i, w, T0) for i, w in [("a", 4.0), ("b", 1.0), ("c", 16.0)]]
    pairs = [("a", "b", 1.0), ("c", "a", 2.0), ("a", "c", 1.0)]
    state.apply(changes(hits=hits, co_occurrences=pairs))
    assert_ranked_equal(
        state.neighbours("a", 10), [("b", cosine(1.0, 4.0, 1.0)), ("c", cosine(3.0, 4.0, 16.0))]
    )
    assert_ranked_equal(state.neighbours("c", 10), [("a", cosine(3.0, 16.0, 4.0))])
    assert [i for i, _ in state.neighbours("a", 1)] == ["b"]
    assert state.neighbours("unknown", 10) == []


def test_neighbours_many_answers_like_neighbours(state: ProcessorState) -> None:
    hits = [(GLOBAL_SEGMENT, i, w, T0) for i, w in [("a", 4.0), ("b", 1.0), ("c", 16.0)]]
    state.apply(changes(hits=hits, co_occurrences=[("a", "b", 1.0), ("c", "a", 2.0)]))
    state.neighbours("b", 10)  # one remembered, the others read together
    many = state.neighbours_many(["a", "b", "c", "unknown"], 10)
    assert set(many) == {"a", "b", "c", "unknown"}
    for item in ("a", "b", "c"):
        assert_ranked_equal(many[item], state.neighbours(item, 10))
    assert many["unknown"] == []
    assert [i for i, _ in state.neighbours_many(["a"], 1)["a"]] == ["b"]  # 1/2 beats 2/8


def test_a_new_pair_is_a_neighbour_at_once(state: ProcessorState) -> None:
    hits = [(GLOBAL_SEGMENT, i, 1.0, T0) for i in "abc"]
    state.apply(changes(hits=hits, co_occurrences=[("a", "b", 1.0)]))
    assert [i for i, _ in state.neighbours("a", 10)] == ["b"]
    state.apply(changes(co_occurrences=[("c", "a", 1.0)]))
    assert sorted(i for i, _ in state.neighbours("a", 10)) == ["b", "c"]


def counted(item: str, other: str) -> StateChanges:
    """Behaviour on `item` (not in the catalog) seen with `other`: its hits, volume and
    co-occurrence counted, and noted as unlisted."""
    hits = [(GLOBAL_SEGMENT, item, 1.0, T0), ("country:de", item, 1.0, T0)]
    return changes(
        hits=hits, co_occurrences=[(item, other, 1.0)], unlisted={item: None, other: None}
    )


def test_the_counts_of_items_the_catalog_does_not_list_are_kept_for_the_last_seen_only(
    make_state: MakeState,
) -> None:
    state = make_state(HALF_LIFE, unlisted_cap=4)
    state.apply(changes(items={"sku": Item("sku")}, hits=[(GLOBAL_SEGMENT, "sku", 9.0, T0)]))
    for n in range(6):  # x0 with x1, x1 with x2, ...: eight ids seen, four kept
        state.apply(counted(f"x{n}", f"x{n + 1}"))
    # x0, x1, x2 forgotten; x3-x5 counted (x6 only ever seen beside x5: no hits of its own)
    assert {i for i, _ in state.popular(GLOBAL_SEGMENT, 20)} == {"sku", "x3", "x4", "x5"}
    assert {i for i, _ in state.popular("country:de", 20)} == {"x3", "x4", "x5"}
    assert state.neighbours("x2", 10) == []  # its row is gone...
    assert [i for i, _ in state.neighbours("x3", 10)] == ["x4"]  # ...and it from x3's
    assert [i for i, _ in state.neighbours("x4", 10)] == ["x5", "x3"]  # ties: larger id
    # Seen again, an item goes to the end: x4, not x3, is the next to go.
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "x3", 1.0, T0)], unlisted={"x3": None}))
    state.apply(counted("y", "x3"))
    assert {i for i, _ in state.popular(GLOBAL_SEGMENT, 20)} == {"sku", "x3", "x5", "y"}


def test_a_listed_item_is_never_forgotten(make_state: MakeState) -> None:
    state = make_state(HALF_LIFE, unlisted_cap=2)
    # Counted while unlisted (a processor that read the catalog before it was listed)...
    state.apply(counted("new", "a"))
    state.apply(changes(items={"new": Item("new")}))  # ...then listed
    state.apply(changes(hits=[(GLOBAL_SEGMENT, "late", 1.0, T0)], unlisted={"new": None}))
    for n in range(4):
        state.apply(counted(f"z{n}", f"z{n + 1}"))
    assert {i for i, _ in state.popular(GLOBAL_SEGMENT, 20)} >= {"new", "late"}
    assert {i for i, _ in state.popular("country:de", 20)} == {"new", "z3"}
    assert state.neighbours("a", 10) == []  # a, never listed, is forgotten


def test_same_changes_give_the_in_memory_results(make_state: MakeState) -> None:
    rng = random.Random(7)
    items = [f"i{n}" for n in range(12)]
    segments = [GLOBAL_SEGMENT, "country:de", "device:mobile"]
    reference = InMemoryProcessorState(HALF_LIFE)
    state = make_state(HALF_LIFE)
    for batch in range(6):
        ts = T0 + batch * 900
        step = changes(
            event_ids=[f"e{batch}-{n}" for n in range(20)],
            hits=[
                (rng.choice(segments), rng.choice(items), rng.choice([0.5, 1.0, 1.5, 3.0]), ts + n)
                for n in range(20)
            ],
            co_occurrences=[
                (rng.choice(items), rng.choice(items), rng.choice([1.0, 1.5, 5.0]))
                for _ in range(20)
            ],
        )
        step.co_occurrences = [(a, b, w) for a, b, w in step.co_occurrences if a != b]
        reference.apply(step)
        state.apply(step)
    for segment in segments:
        assert_ranked_equal(state.popular(segment, 20), reference.popular(segment, 20))
    for item in items:
        assert_ranked_equal(state.neighbours(item, 20), reference.neighbours(item, 20))


def assert_ranked_equal(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)


def test_apply_lands_a_batch_with_its_event_ids(state: ProcessorState) -> None:
    session = SessionState(subject="u:1", interactions=1, last_seen=T0)
    state.apply(
        changes(
            event_ids=["e1", "e2"],
            sessions={"u:1": session},
            items={"a": Item("a", stock=1)},
            hits=[(GLOBAL_SEGMENT, "a", 1.0, T0)],
            co_occurrences=[("a", "b", 1.0)],
        )
    )
    assert state.applied(["e1", "e2"]) == {"e1", "e2"}
    assert state.sessions(["u:1"])["u:1"].interactions == 1
    assert set(state.items(["a"])) == {"a"}
    assert state.popular(GLOBAL_SEGMENT, 5) == [("a", forward_weight(1.0, T0, T0, HALF_LIFE))]
    assert [i for i, _ in state.neighbours("b", 5)] == ["a"]


def three_transactions() -> list[StateChanges]:
    """Three transactions as the processor sends them: no session in two of them."""
    return [
        changes(
            event_ids=[f"e{t}-{n}" for n in range(3)],
            sessions={f"u:{t}": SessionState(subject=f"u:{t}", interactions=t + 1)},
            items={f"i{t}": Item(f"i{t}", stock=t)},
            hits=[(GLOBAL_SEGMENT, f"i{t}", 1.0, T0 + t), ("country:de", "i0", 2.0, T0 + t)],
            co_occurrences=[("i0", f"i{t + 1}", 1.0)],
        )
        for t in range(3)
    ]


def test_apply_all_lands_like_one_apply_after_another(make_state: MakeState) -> None:
    together, one_by_one = make_state(HALF_LIFE), make_state(HALF_LIFE)
    together.apply_all(three_transactions())
    for transaction in three_transactions():
        one_by_one.apply(transaction)
    ids = [f"e{t}-{n}" for t in range(4) for n in range(3)]
    assert together.applied(ids) == one_by_one.applied(ids) == set(ids[:9])
    subjects = ["u:0", "u:1", "u:2"]
    assert together.sessions(subjects) == one_by_one.sessions(subjects)
    assert together.items(["i0", "i1", "i2"]) == one_by_one.items(["i0", "i1", "i2"])
    for segment in (GLOBAL_SEGMENT, "country:de"):
        assert together.popular(segment, 5) == one_by_one.popular(segment, 5)
    assert together.neighbours("i0", 5) == one_by_one.neighbours("i0", 5)
    assert together.neighbours_many(["i1", "i3"], 5) == one_by_one.neighbours_many(["i1", "i3"], 5)


# Redis only: TTLs, bounds, a landmark shared by processors, atomicity on a cut connection.


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    # No retries: a cut connection must surface, not be papered over by a resend.
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    yield client
    client.close()


def redis_state(client: redis.Redis, clock: ManualClock, **kw: Any) -> RedisProcessorState:
    return RedisProcessorState(client, clock, HALF_LIFE, prefix="t:", **kw)


@pytest.mark.redis
def test_redis_remembers_event_ids_for_the_dedup_ttl_then_forgets(
    redis_client: redis.Redis,
) -> None:
    clock = ManualClock(T0)
    state = redis_state(redis_client, clock, dedup_ttl_s=100.0)
    state.apply(changes(event_ids=["e1"]))
    (key,) = redis_client.keys("t:applied:*")
    assert 100_000 <= redis_client.pttl(key) <= 200_000
    clock.advance(99.0)
    assert state.applied(["e1"]) == {"e1"}
    clock.advance(201.0)
    assert state.applied(["e1"]) == set()


@pytest.mark.redis
def test_redis_sessions_expire_and_every_growing_key_has_a_ttl(
    redis_client: redis.Redis,
) -> None:
    state = redis_state(redis_client, ManualClock(T0), session_ttl_s=600.0)
    state.apply(
        changes(
            event_ids=["e1"],
            sessions={"u:1": SessionState(subject="u:1")},
            items={"a": Item("a")},
            hits=[(GLOBAL_SEGMENT, "a", 1.0, T0)],
            co_occurrences=[("a", "b", 1.0)],
        )
    )
    assert 599_000 <= redis_client.pttl("t:session:u:1") <= 600_000
    ttls = {k.decode(): redis_client.pttl(k) for k in redis_client.scan_iter(match="t:*")}
    # Catalog-sized keys (items, counters) live on; sessions and event ids expire.
    assert {k for k, ttl in ttls.items() if ttl < 0} == {
        "t:item:a",
        "t:hits:global",
        "t:hits_landmark",
        "t:hits_segments",
        "t:volume",
        "t:co:a",
        "t:co:b",
    }


@pytest.mark.redis
def test_redis_trims_long_co_occurrence_rows_to_the_strongest(
    redis_client: redis.Redis,
) -> None:
    state = redis_state(redis_client, ManualClock(T0), co_occurrence_cap=2)
    state.apply(changes(co_occurrences=[("a", f"n{w}", float(w)) for w in range(1, 5)]))
    assert redis_client.zcard("t:co:a") == 4  # trimmed only past twice the cap
    state.apply(changes(co_occurrences=[("a", "n5", 5.0)]))
    assert redis_client.zrange("t:co:a", 0, -1) == [b"n4", b"n5"]
    state.apply(changes(co_occurrences=[("n5", "a", 1.0)]))
    assert redis_client.zscore("t:co:a", "n5") == 6.0


@pytest.mark.redis
def test_redis_processors_share_one_decay_landmark(redis_client: redis.Redis) -> None:
    clock = ManualClock(T0)
    first = redis_state(redis_client, clock)
    second = redis_state(redis_client, clock)
    reference = InMemoryProcessorState(HALF_LIFE)
    batches = [
        changes(hits=[(GLOBAL_SEGMENT, "a", 3.0, T0 + 10)]),
        changes(hits=[(GLOBAL_SEGMENT, "b", 2.0, T0 + 10 + HALF_LIFE)]),
        changes(hits=[(GLOBAL_SEGMENT, "a", 0.5, T0 + 10 + 2 * HALF_LIFE)]),
    ]
    for n, batch in enumerate(batches):
        (first if n % 2 == 0 else second).apply(batch)
        reference.apply(batch)
    assert_ranked_equal(first.popular(GLOBAL_SEGMENT, 5), reference.popular(GLOBAL_SEGMENT, 5))


@pytest.mark.redis
def test_redis_apply_and_applied_are_one_round_trip_each(redis_client: redis.Redis) -> None:
    state = redis_state(redis_client, ManualClock(T0))
    redis_client.ping()
    sent = count_requests(redis_client)
    state.apply(
        changes(
            event_ids=[f"e{n}" for n in range(50)],
            sessions={f"u:{n}": SessionState(subject=f"u:{n}") for n in range(10)},
            items={f"i{n}": Item(f"i{n}") for n in range(10)},
            hits=[(GLOBAL_SEGMENT, f"i{n}", 1.0, T0) for n in range(10)],
            co_occurrences=[("i0", f"i{n}", 1.0) for n in range(1, 10)],
        )
    )
    assert sent() == 1
    assert len(state.applied([f"e{n}" for n in range(60)])) == 50
    assert sent() == 1


@pytest.mark.redis
def test_redis_apply_cut_mid_transaction_changes_nothing_and_a_retry_lands_once(
    redis_client: redis.Redis,
) -> None:
    state = redis_state(redis_client, ManualClock(T0))
    batch = changes(
        event_ids=[f"e{n}" for n in range(20)],
        sessions={f"u:{n}": SessionState(subject=f"u:{n}", interactions=1) for n in range(20)},
        items={f"i{n}": Item(f"i{n}", stock=1) for n in range(20)},
        hits=[(GLOBAL_SEGMENT, "i0", 1.0, T0)],
        co_occurrences=[("i0", "i1", 1.0)],
    )
    cut_next_request_halfway(redis_client)
    with pytest.raises(redis.ConnectionError):
        state.apply(batch)

    assert list(redis_client.scan_iter(match="t:*")) == []
    assert state.applied(batch.event_ids) == set()
    assert state.items(batch.items) == {}
    assert state.sessions(["u:0"])["u:0"].interactions == 0

    state.apply(batch)  # the redelivery
    assert state.applied(batch.event_ids) == set(batch.event_ids)
    assert len(state.items(batch.items)) == 20
    assert state.popular(GLOBAL_SEGMENT, 5) == [("i0", 1.0)]
    assert state.neighbours("i1", 5) == [("i0", cosine(1.0, 0.0, 1.0))]


@pytest.mark.redis
def test_redis_apply_all_is_one_round_trip(redis_client: redis.Redis) -> None:
    state = redis_state(redis_client, ManualClock(T0))
    redis_client.ping()
    sent = count_requests(redis_client)
    state.apply_all(three_transactions())
    assert sent() == 1
    assert state.neighbours("i3", 5) == [("i0", cosine(1.0, 0.0, 1.0))]  # read after it


@pytest.mark.redis
def test_redis_apply_all_cut_part_way_lands_whole_transactions_in_order(
    redis_client: redis.Redis,
) -> None:
    state = redis_state(redis_client, ManualClock(T0))
    transactions = three_transactions()
    cut_next_request_halfway(redis_client)
    with pytest.raises(redis.ConnectionError):
        state.apply_all(transactions)

    landed = [bool(state.applied(t.event_ids)) for t in transactions]
    assert landed == [True, False, False]  # half the bytes: the first whole, no more
    for transaction, was in zip(transactions, landed, strict=True):
        (subject,) = transaction.sessions
        stored = state.sessions([subject])[subject].interactions
        assert stored == (transaction.sessions[subject].interactions if was else 0)
    # The redelivery: what landed is recognised by its ids, the rest lands once.
    state.apply_all([t for t, was in zip(transactions, landed, strict=True) if not was])
    ids = [e for t in transactions for e in t.event_ids]
    assert state.applied(ids) == set(ids)
    twice = sum(forward_weight(2.0, T0 + t, T0, HALF_LIFE) for t in range(3))
    assert state.popular("country:de", 5) == [("i0", pytest.approx(twice, rel=1e-9))]


def count_requests(client: redis.Redis) -> Callable[[], int]:
    """Counts requests sent on the client's one connection since last asked."""
    conn = client.connection_pool.get_connection()
    original = conn.send_packed_command
    sent = [0]

    def counting(*args: Any, **kw: Any) -> None:
        sent[0] += 1
        original(*args, **kw)

    def since_last() -> int:
        count, sent[0] = sent[0], 0
        return count

    conn.send_packed_command = counting  # type: ignore[method-assign]
    client.connection_pool.release(conn)
    return since_last


def cut_next_request_halfway(client: redis.Redis) -> None:
    """The next request on the client's one connection sends half its bytes, then the
    connection drops: as when a processor dies mid-write."""
    conn = client.connection_pool.get_connection()
    original = conn.send_packed_command

    def cut(command: Any, check_health: bool = True) -> None:
        data = b"".join(command) if isinstance(command, list) else bytes(command)
        conn.send_packed_command = original  # type: ignore[method-assign]
        original([data[: len(data) // 2]], check_health=False)
        conn.disconnect()
        raise redis.ConnectionError("connection cut by the test")

    conn.send_packed_command = cut  # type: ignore[method-assign]
    client.connection_pool.release(conn)


def test_a_published_report_is_read_back_whole_and_replaced_by_the_next(
    state: ProcessorState,
) -> None:
    assert state.published_report() is None
    first = {"champion": "champion", "variants": [{"name": "champion", "sessions": 3}]}
    state.publish_report(first)
    assert state.published_report() == first
    second = {"champion": "challenger", "variants": [], "changes": [{"reason": "guardrail"}]}
    state.publish_report(second)
    assert state.published_report() == second
