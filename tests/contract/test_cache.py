"""One contract for every RecommendationCache: the in-memory one and Redis.

The memory cache runs on a manual clock; the Redis one on the wall clock with real key
expiry, so its TTL tests wait about a second.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Container, Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import pytest
import redis

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
from shopper.adapters.redis_page_cache import RedisPageCache
from shopper.adapters.system_clock import ManualClock, SystemClock
from shopper.domain.event import StockChange
from shopper.domain.recommendation import (
    PageRead,
    RecommendationList,
    ScoredItem,
    Source,
    choose_list,
)
from shopper.ports.cache import ListKey, RecommendationCache

T = TypeVar("T")
FRESH_TTL = 0.5
LKG_TTL = 1.2
ALICE = ListKey("u:alice", "champion")


def gone(*items: str, ts: float = 1.0) -> list[StockChange]:
    return [StockChange(i, False, ts) for i in items]


def back(*items: str, ts: float = 1.0) -> list[StockChange]:
    return [StockChange(i, True, ts) for i in items]


@dataclass
class Harness:
    make: Callable[[float, float], RecommendationCache]  # (fresh TTL, LKG TTL) -> cache
    wait: Callable[[float], None]  # let this much time pass for the cache


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-page-path", marks=pytest.mark.redis),
    ]
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        clock = ManualClock()
        yield Harness(partial(InMemoryRecommendationCache, clock), clock.advance)
        return
    url = request.getfixturevalue("redis_url")
    client = redis_from_url(url)
    made: list[PagePath] = []

    def page_path(fresh_ttl_s: float, lkg_ttl_s: float) -> PagePath:
        made.append(
            PagePath(RedisRecommendationCache(client, SystemClock(), fresh_ttl_s, lkg_ttl_s), url)
        )
        return made[-1]

    try:
        if request.param == "redis":
            yield Harness(partial(RedisRecommendationCache, client, SystemClock()), time.sleep)
        else:
            yield Harness(page_path, time.sleep)
    finally:
        for path in made:
            path.close()
        client.close()


class PagePath:
    """The Redis cache with its reads done as the API does them: awaited through the page
    path's near-cached reader (after it caught up with the writes), the sold-out answer
    narrowed to the items read, as the synchronous read answers it."""

    def __init__(self, writer: RedisRecommendationCache, url: str) -> None:
        self.writer = writer
        self.pages = RedisPageCache(url, prefix="shopper:")
        # A running loop of its own, as the API's: the follower keeps up between reads.
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def __getattr__(self, name: str) -> Any:  # the writes, list_age, sold_out_among
        return getattr(self.writer, name)

    def read_page(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None = None
    ) -> PageRead:
        page = self._run(self._read(key, segments, context_item))
        lists = (page.fresh, page.last_known_good, *page.popular, page.similar)
        read = {i for r in lists if r is not None for i in r.item_ids()}
        return replace(page, sold_out=frozenset(i for i in read if i in page.sold_out))

    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        ranked, sold_out = self._run(self._similar(item_id))
        ids = ranked.item_ids() if ranked is not None else []
        return ranked, frozenset(i for i in ids if i in sold_out)

    async def _read(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None
    ) -> PageRead:
        await self.pages.wait_current()
        return await self.pages.read_page(key, segments, context_item)

    async def _similar(self, item_id: str) -> tuple[RecommendationList | None, Container[str]]:
        await self.pages.wait_current()
        return await self.pages.read_similar(item_id)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self._run(self.pages.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def cache(harness: Harness) -> RecommendationCache:
    return harness.make(FRESH_TTL, LKG_TTL)


def ranked(
    ids: list[str], source: Source = Source.PERSONALIZED, list_id: str = "list-1"
) -> RecommendationList:
    items = tuple(ScoredItem(i, round(1.0 - n / 100, 6)) for n, i in enumerate(ids))
    return RecommendationList(items, "champion", source, 1_700_000_123.25, list_id)


def assert_same_list(got: RecommendationList | None, want: RecommendationList) -> None:
    assert got is not None
    assert got.item_ids() == want.item_ids()
    assert [s.score for s in got.items] == pytest.approx([s.score for s in want.items], rel=1e-6)
    assert (got.variant, got.source, got.list_id) == (want.variant, want.source, want.list_id)
    assert got.generated_at == want.generated_at


def test_list_round_trip_keeps_order_scores_and_header(cache: RecommendationCache) -> None:
    ids = [f"sku-{n}" for n in range(47)] + ["äpfel-ü", "x" * 200, "a\x1fb", "z"]
    want = ranked(ids, list_id="7f3a" * 8)
    want = RecommendationList(
        (*want.items[:-1], ScoredItem("z", 0.0)), "challenger", want.source, 1.5, want.list_id
    )
    key = ListKey("s:anon-1", "challenger")
    cache.write_lists([(key, want)])
    page = cache.read_page(key, [])
    assert_same_list(page.fresh, want)
    assert_same_list(page.last_known_good, want)
    assert page.popular == ()
    assert page.sold_out == frozenset()


def test_fresh_then_last_known_good_then_nothing(
    cache: RecommendationCache, harness: Harness
) -> None:
    want = ranked(["a", "b", "c"])
    cache.write_lists([(ALICE, want)])
    assert cache.read_page(ALICE, []).fresh is not None

    harness.wait(FRESH_TTL + 0.2)
    page = cache.read_page(ALICE, [])
    assert page.fresh is None
    assert_same_list(page.last_known_good, want)
    shown = choose_list(page, k=3)
    assert shown is not None and shown.source is Source.LAST_KNOWN_GOOD
    assert shown.item_ids() == ["a", "b", "c"]

    harness.wait(LKG_TTL - FRESH_TTL)
    page = cache.read_page(ALICE, [])
    assert (page.fresh, page.last_known_good) == (None, None)


def test_rewriting_a_list_makes_it_fresh_again(
    cache: RecommendationCache, harness: Harness
) -> None:
    cache.write_lists([(ALICE, ranked(["a"], list_id="old"))])
    harness.wait(FRESH_TTL * 0.6)
    cache.write_lists([(ALICE, ranked(["b"], list_id="new"))])
    harness.wait(FRESH_TTL * 0.6)  # past the first write's fresh TTL, not the second's
    page = cache.read_page(ALICE, [])
    assert page.fresh is not None and page.fresh.list_id == "new"
    assert page.fresh.item_ids() == ["b"]


def test_lists_are_per_subject_and_variant(cache: RecommendationCache) -> None:
    challenger = ListKey(ALICE.subject, "challenger")
    bob = ListKey("u:bob", ALICE.variant)
    cache.write_lists(
        [(ALICE, ranked(["a"], list_id="1")), (challenger, ranked(["b"], list_id="2"))]
    )
    assert_page_list(cache.read_page(ALICE, []), "1")
    assert_page_list(cache.read_page(challenger, []), "2")
    assert cache.read_page(bob, []).last_known_good is None


def assert_page_list(page: PageRead, list_id: str) -> None:
    assert page.fresh is not None and page.fresh.list_id == list_id


def test_popular_lists_per_segment_in_the_order_asked(cache: RecommendationCache) -> None:
    de = ranked(["d1", "d2"], Source.POPULAR, "popular:country:de")
    everyone = ranked(["g1", "g2", "g3"], Source.POPULAR, "popular:global")
    cache.write_popular("global", everyone)
    cache.write_popular("country:de", de)

    page = cache.read_page(None, ["country:de", "device:mobile", "global"])
    assert (page.fresh, page.last_known_good) == (None, None)
    assert len(page.popular) == 2
    assert_same_list(page.popular[0], de)
    assert_same_list(page.popular[1], everyone)
    assert [p.list_id for p in cache.read_page(ALICE, ["global"]).popular] == ["popular:global"]

    cache.write_popular("global", ranked(["g9"], Source.POPULAR, "popular:global"))
    assert cache.read_page(None, ["global"]).popular[0].item_ids() == ["g9"]


def test_read_page_reports_sold_out_items_of_every_list_it_returns(
    cache: RecommendationCache,
) -> None:
    cache.write_lists([(ALICE, ranked(["a", "b", "c"]))])
    cache.write_popular("global", ranked(["c", "p", "q"], Source.POPULAR))
    cache.set_stock(gone("b", "q", "not-shown"))

    page = cache.read_page(ALICE, ["global"])
    assert page.sold_out == {"b", "q"}
    assert cache.read_page(None, ["global"]).sold_out == {"q"}
    shown = choose_list(page, k=4)
    assert shown is not None and shown.item_ids() == ["a", "c", "p"]


def test_in_stock_takes_an_item_out_of_the_sold_out_set(cache: RecommendationCache) -> None:
    cache.write_lists([(ALICE, ranked(["a", "b", "c"]))])
    cache.set_stock(gone("a", "b", ts=1.0))
    cache.set_stock(back("a", "never-sold-out", ts=2.0))
    assert cache.read_page(ALICE, []).sold_out == {"b"}
    # Within one update, changes apply in order.
    cache.set_stock([*back("c", ts=3.0), *gone("c", ts=3.0)])
    assert cache.read_page(ALICE, []).sold_out == {"b", "c"}
    cache.set_stock(back("b", "c", ts=4.0))
    assert cache.read_page(ALICE, []).sold_out == frozenset()


def test_an_older_stock_change_never_overrides_a_newer_one(cache: RecommendationCache) -> None:
    """The API and the processor both deliver stock changes, in either order."""
    cache.write_lists([(ALICE, ranked(["a", "b"]))])
    cache.set_stock(gone("a", ts=10.0))
    cache.set_stock(back("a", ts=9.0))  # the processor catching up on an older restock
    assert cache.read_page(ALICE, []).sold_out == {"a"}
    assert cache.sold_out_among(["a", "b", "unknown"]) == {"a"}
    cache.set_stock(back("a", ts=11.0))
    cache.set_stock(gone("a", ts=10.0))  # the old sell-out, delivered again
    assert cache.read_page(ALICE, []).sold_out == frozenset()
    assert cache.sold_out_among(["a"]) == set()


def test_list_age_counts_from_the_last_write(cache: RecommendationCache, harness: Harness) -> None:
    assert cache.list_age(ALICE) is None
    cache.write_lists([(ALICE, ranked(["a"]))])
    harness.wait(0.2)
    age = cache.list_age(ALICE)
    assert age is not None and 0.2 - 1e-6 <= age < 0.2 + 0.5
    harness.wait(FRESH_TTL)  # a last-known-good list still has an age
    later = cache.list_age(ALICE)
    assert later is not None and later >= 0.2 + FRESH_TTL - 1e-6
    cache.write_lists([(ALICE, ranked(["b"]))])
    again = cache.list_age(ALICE)
    assert again is not None and again < 0.15


def similar(item: str, ids: list[str]) -> RecommendationList:
    return ranked(ids, Source.SIMILAR, f"similar:{item}")


def test_similar_lists_round_trip_per_item(cache: RecommendationCache) -> None:
    shoe = RecommendationList(
        similar("shoe-1", ["shoe-2", "shoe-3", "äpfel-ü"]).items,
        "champion", Source.SIMILAR, 1_700_000_123.25, "similar:shoe-1", "", "similar",
    )  # fmt: skip
    cache.write_similar([("shoe-1", shoe), ("phone-1", similar("phone-1", ["phone-2"]))])
    got, sold_out = cache.read_similar("shoe-1")
    assert_same_list(got, shoe)
    assert got is not None and (got.tier, got.model) == ("", "similar")
    assert sold_out == frozenset()
    phone, _ = cache.read_similar("phone-1")
    assert phone is not None and phone.item_ids() == ["phone-2"]

    cache.write_similar([("shoe-1", similar("shoe-1", ["shoe-9"]))])
    again, _ = cache.read_similar("shoe-1")
    assert again is not None and again.item_ids() == ["shoe-9"]


def test_read_similar_reports_its_sold_out_items(cache: RecommendationCache) -> None:
    cache.write_similar([("shoe-1", similar("shoe-1", ["shoe-2", "shoe-3", "shoe-4"]))])
    cache.set_stock(gone("shoe-3", "shoe-1", "phone-2"))
    got, sold_out = cache.read_similar("shoe-1")
    assert got is not None and got.item_ids() == ["shoe-2", "shoe-3", "shoe-4"]
    assert sold_out == {"shoe-3"}  # only its own items, not the item on the page
    cache.set_stock(back("shoe-3", ts=2.0))
    assert cache.read_similar("shoe-1")[1] == frozenset()


def test_an_item_without_a_similar_list_reads_none(
    cache: RecommendationCache, harness: Harness
) -> None:
    cache.set_stock(gone("nobody-knows"))
    assert cache.read_similar("nobody-knows") == (None, frozenset())
    cache.write_lists([(ListKey("nobody-knows", "champion"), ranked(["a"]))])
    cache.write_similar([("shoe-1", similar("shoe-1", ["shoe-2"]))])
    assert cache.read_similar("nobody-knows") == (None, frozenset())

    harness.wait(LKG_TTL + 0.2)  # kept as long as a last-known-good list, no longer
    assert cache.read_similar("shoe-1") == (None, frozenset())


def test_read_page_brings_the_page_items_similar_list_in_the_same_read(
    cache: RecommendationCache,
) -> None:
    cache.write_lists([(ALICE, ranked(["a", "b"]))])
    cache.write_popular("global", ranked(["g1"], Source.POPULAR, "popular:global"))
    cache.write_similar([("shoe-1", similar("shoe-1", ["shoe-2", "shoe-3"]))])
    cache.set_stock(gone("shoe-3"))

    page = cache.read_page(ALICE, ["country:de", "global"], context_item="shoe-1")
    assert page.similar is not None and page.similar.item_ids() == ["shoe-2", "shoe-3"]
    assert [p.list_id for p in page.popular] == ["popular:global"]
    assert_page_list(page, "list-1")
    assert page.sold_out == {"shoe-3"}
    # Without an item on the page, or for an item with no list, there is none.
    assert cache.read_page(ALICE, ["global"]).similar is None
    unknown = cache.read_page(None, ["global"], context_item="nobody-knows")
    assert unknown.similar is None
    assert [p.list_id for p in unknown.popular] == ["popular:global"]


# Redis only: storage, expiry in Redis itself, round trips.


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_from_url(redis_url)
    yield client
    client.close()


@pytest.mark.redis
def test_redis_stores_a_50_item_list_compactly_with_real_ttls(redis_client: redis.Redis) -> None:
    cache = RedisRecommendationCache(redis_client, SystemClock(), 900, 7 * 86400, prefix="t:")
    ids = [f"item-{n:05d}" for n in range(50)]
    cache.write_lists([(ALICE, ranked(ids, list_id="0123456789abcdef" * 2))])

    footprint = cache.footprint(ALICE)
    assert footprint is not None
    # 50 ids of 10 bytes: 50 * (10 + 1 length byte + 4 score bytes) + a ~60-byte header.
    assert footprint.value_bytes == 50 * 15 + 24 + len("champion") + 32
    assert footprint.total < 1200  # one JSON object per item would take about three times this
    assert redis_client.pttl("t:fresh:champion:u:alice") in range(899_000, 900_001)
    assert redis_client.ttl("t:list:champion:u:alice") in range(7 * 86400 - 2, 7 * 86400 + 1)
    assert cache.footprint(ListKey("u:nobody", "champion")) is None


@pytest.mark.redis
def test_redis_a_stock_time_stored_from_a_clients_clock_yields_to_a_restock(
    redis_client: redis.Redis,
) -> None:
    """Stock changes are ordered by server receive times; an older version ordered them by
    the event's own ts, and a client's 9999-12-31 may still be stored."""
    clock = ManualClock(1_700_000_000.0)
    cache = RedisRecommendationCache(redis_client, clock, 900, 7 * 86400, prefix="legacy:")
    cache.set_stock(gone("a", ts=253_402_214_400.0))  # 9999-12-31, as stored before
    assert cache.sold_out_among(["a"]) == {"a"}
    cache.set_stock(back("a", ts=clock.now()))
    assert cache.sold_out_among(["a"]) == set()
    cache.set_stock(gone("a", ts=clock.now() - 1.0))  # an older word still loses
    assert cache.sold_out_among(["a"]) == set()


@pytest.mark.redis
def test_redis_keys_expire_in_redis(redis_client: redis.Redis) -> None:
    cache = RedisRecommendationCache(redis_client, SystemClock(), 0.2, 0.8, prefix="t:")
    cache.write_lists([(ALICE, ranked(["a"]))])
    assert redis_client.exists("t:fresh:champion:u:alice", "t:list:champion:u:alice") == 2
    time.sleep(0.35)
    assert redis_client.exists("t:fresh:champion:u:alice", "t:list:champion:u:alice") == 1
    time.sleep(0.55)
    assert redis_client.exists("t:fresh:champion:u:alice", "t:list:champion:u:alice") == 0


@pytest.mark.redis
def test_redis_prefixes_keep_caches_apart(redis_client: redis.Redis) -> None:
    one = RedisRecommendationCache(redis_client, SystemClock(), 60, 60, prefix="one:")
    two = RedisRecommendationCache(redis_client, SystemClock(), 60, 60, prefix="two:")
    one.write_lists([(ALICE, ranked(["a"]))])
    one.set_stock(gone("a"))
    assert two.read_page(ALICE, []).last_known_good is None
    assert two.read_page(ALICE, []).sold_out == frozenset()
    assert set(redis_client.scan_iter(match="one:*")) == {
        b"one:list:champion:u:alice",
        b"one:fresh:champion:u:alice",
        b"one:sold_out",
        b"one:stock_ts",
        b"one:changes",  # the stock flip, for the API processes' near caches
        b"one:changes_seq",
    }
    assert list(redis_client.scan_iter(match="two:*")) == []


@pytest.mark.redis
def test_redis_page_read_and_writes_are_one_round_trip_each(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RedisRecommendationCache(redis_client, SystemClock(), 60, 60, prefix="t:")
    cache.read_page(ALICE, ["global"])  # loads the script and opens the connection
    sent = count_requests(monkeypatch)

    cache.write_lists([(ListKey(f"u:{n}", "champion"), ranked(["a", "b"])) for n in range(20)])
    assert sent() == 1
    cache.set_stock([*back("a"), *gone("b")])
    assert sent() == 1
    cache.read_page(ListKey("u:3", "champion"), ["country:de", "device:mobile", "global"])
    assert sent() == 1


@pytest.mark.redis
def test_redis_similar_lists_are_one_round_trip_each_way_and_expire(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RedisRecommendationCache(redis_client, SystemClock(), 60, 3600, prefix="t:")
    cache.read_similar("sku-0")  # loads the script and opens the connection
    sent = count_requests(monkeypatch)

    cache.write_similar([(f"sku-{n}", similar(f"sku-{n}", ["a", "b"])) for n in range(20)])
    assert sent() == 1
    cache.set_stock(gone("b"))
    sent()
    assert cache.read_similar("sku-3")[1] == {"b"}
    assert sent() == 1
    assert redis_client.pttl("t:similar:sku-3") in range(3_599_000, 3_600_001)


def count_requests(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts requests sent to Redis; the returned function says how many since last asked."""
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: redis.connection.AbstractConnection, *args: Any, **kw: Any) -> None:
        sent[0] += 1
        original(self, *args, **kw)

    def since_last() -> int:
        count, sent[0] = sent[0], 0
        return count

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return since_last
