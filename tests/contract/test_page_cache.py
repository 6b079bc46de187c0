"""The page path's Redis reader beyond the cache contract (which it passes too, as the
`redis-page-path` harness of test_cache.py): its near cache of the sold-out set and popular
lists, kept current by the change stream, and what it does when it cannot be."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
from shopper.adapters.redis_near_cache import Lane
from shopper.adapters.redis_page_cache import TIMEOUTS_TO_DEGRADE, RedisPageCache
from shopper.adapters.system_clock import SystemClock
from shopper.domain.event import StockChange
from shopper.domain.recommendation import RecommendationList, ScoredItem, Source, choose_list
from shopper.ports.cache import ListKey

pytestmark = pytest.mark.redis

PREFIX = "page:"
ALICE = ListKey("u:alice", "champion")


def ranked(ids: list[str], source: Source = Source.PERSONALIZED) -> RecommendationList:
    items = tuple(ScoredItem(i, 1.0 - n / 100) for n, i in enumerate(ids))
    return RecommendationList(items, "champion", source, 1.0, "list-1")


def gone(item: str) -> list[StockChange]:
    return [StockChange(item, False, time.time())]


@pytest.fixture
def writer(redis_url: str) -> Iterator[RedisRecommendationCache]:
    client = redis_from_url(redis_url)
    yield RedisRecommendationCache(client, SystemClock(), 60, 60, prefix=PREFIX)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class Counted:
    """Counts the page path's Redis calls: plain commands and page-script calls."""

    def __init__(self, pages: RedisPageCache, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.scripts = 0
        lane_command = pages._lane.command
        script = pages._script

        async def command(*args: Any) -> Any:
            self.commands.append(args)
            return await lane_command(*args)

        async def run_script(*args: Any) -> Any:
            self.scripts += 1
            return await script(*args)

        monkeypatch.setattr(pages._lane, "command", command)
        monkeypatch.setattr(pages, "_script", run_script)


def shown(page: Any, k: int = 10) -> list[str]:
    chosen = choose_list(page, k)
    return chosen.item_ids() if chosen is not None else []


def test_a_page_read_is_one_mget_once_the_popular_lists_are_near(
    redis_url: str, writer: RedisRecommendationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])
    writer.write_popular("global", ranked(["g1", "g2"], Source.POPULAR))
    writer.set_stock(gone("b"))

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        first = await pages.read_page(ALICE, ["global"], visible=2)  # fetches global too
        assert shown(first, 2) == ["a", "c"]
        counted = Counted(pages, monkeypatch)
        page = await pages.read_page(ALICE, ["global"], visible=2)
        assert shown(page, 4) == ["a", "c", "g1", "g2"]
        assert counted.scripts == 0
        assert [c[0] for c in counted.commands] == ["MGET"]
        assert len(counted.commands[0]) == 3  # the fresh marker and the list, nothing else
        await pages.close()

    asyncio.run(main())


def test_an_item_that_sells_out_is_hidden_within_milliseconds(
    redis_url: str, writer: RedisRecommendationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])

    async def main() -> float:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        counted = Counted(pages, monkeypatch)
        assert shown(await pages.read_page(ALICE, [])) == ["a", "b", "c"]
        writer.set_stock(gone("a"))  # as the API does when it accepts the stock event
        sold = time.monotonic()
        while "a" in shown(await pages.read_page(ALICE, [])):
            await asyncio.sleep(0.001)
        hidden_after = time.monotonic() - sold
        assert counted.scripts == 0  # the near cache hid it, not a check in Redis
        await pages.close()
        return hidden_after

    assert asyncio.run(main()) < 0.5


def test_waiting_for_the_near_cache_reads_the_change_counter_once(
    redis_url: str, writer: RedisRecommendationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stock change's 202 waits for the near cache: woken by the follower's pass that
    applies the change, not by asking Redis again and again."""

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        counted = Counted(pages, monkeypatch)
        follow = pages._changes.changes_after

        async def slow_follower(*args: Any) -> Any:
            await asyncio.sleep(0.05)  # each pass 50 ms late: the waits below must wait
            return await follow(*args)

        monkeypatch.setattr(pages._changes, "changes_after", slow_follower)
        for item in ["a", "b", "c"]:
            writer.set_stock(gone(item))  # in Redis, not yet in the near cache
            await asyncio.gather(*(pages.wait_current() for _ in range(3)))
            assert item in pages.near.sold_out
        # One GET of the counter per wait, nothing else on the page's connections.
        assert [c[:2] for c in counted.commands] == [("GET", f"{PREFIX}changes_seq")] * 9
        await pages.close()

    asyncio.run(main())


def test_a_wait_for_a_near_cache_that_is_not_followed_times_out(redis_url: str) -> None:
    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX, follow=False)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"did not catch up in 0\.2 s"):
            await pages.wait_current(0.2)
        assert time.monotonic() - started >= 0.2
        await pages.close()

    asyncio.run(main())


def test_a_follower_that_stops_hands_the_stock_check_back_to_redis(
    redis_url: str,
    writer: RedisRecommendationCache,
    raw: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b"]))])

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX, max_age_s=0.3)
        await pages.wait_current()
        assert pages._follower is not None
        # A follower stuck or dead: the near cache stops. (Stopped, not cancelled: a
        # cancel that lands inside the client's blocking read can be lost.)
        pages._changes.stopping = True
        done, _ = await asyncio.wait({pages._follower}, timeout=2)
        assert done
        writer.set_stock(gone("a"))
        await asyncio.sleep(0.35)
        assert pages.status()["current"] is False
        raw.script_flush()  # a Redis that lost its scripts: loaded again on NOSCRIPT
        counted = Counted(pages, monkeypatch)
        assert shown(await pages.read_page(ALICE, [])) == ["b"]
        assert counted.scripts == 1
        await pages.close()

    asyncio.run(main())


def test_a_gap_in_the_change_numbers_reloads_the_sold_out_set(
    redis_url: str, writer: RedisRecommendationCache, raw: redis.Redis
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        assert pages.status()["reloads"] == 1
        # A change that never reached the stream (trimmed, or lost): only its number.
        raw.sadd(f"{PREFIX}sold_out", "b")
        raw.incr(f"{PREFIX}changes_seq")
        writer.set_stock(gone("c"))  # the next entry shows the gap
        await pages.wait_current()
        assert pages.status()["reloads"] == 2
        assert shown(await pages.read_page(ALICE, [])) == ["a"]
        await pages.close()

    asyncio.run(main())


def test_redis_emptied_and_refilled_is_reloaded_keeping_what_sold_out_before(
    redis_url: str, writer: RedisRecommendationCache, raw: redis.Redis
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])
    writer.set_stock(gone("a"))

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, [])) == ["b", "c"]
        raw.delete(*raw.keys(f"{PREFIX}*"))  # Redis restarted empty, then refilled
        writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])
        writer.set_stock(gone("c"))
        await pages.wait_current()
        # "a" sold out before the restart and nothing restocked it: still hidden, and
        # written back to Redis for every reader.
        assert shown(await pages.read_page(ALICE, [])) == ["b"]
        assert raw.sismember(f"{PREFIX}sold_out", "a")
        writer.set_stock([StockChange("a", True, time.time())])
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, [])) == ["a", "b"]
        await pages.close()

    asyncio.run(main())


def test_closed_on_one_event_loop_it_opens_again_on_another(
    redis_url: str, writer: RedisRecommendationCache
) -> None:
    writer.write_lists([(ALICE, ranked(["a", "b"]))])
    writer.set_stock(gone("b"))
    pages = RedisPageCache(redis_url, PREFIX)

    async def read() -> list[str]:
        await pages.wait_current()
        ids = shown(await pages.read_page(ALICE, []))
        await pages.close()
        return ids

    assert asyncio.run(read()) == ["a"]
    assert asyncio.run(read()) == ["a"]  # a server restarted in the same process


def test_a_read_between_lone_timeouts_keeps_pages_on_redis(
    redis_url: str, writer: RedisRecommendationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timeouts put every page on the copy only in a row: the event loop late to a reply
    now and then (a busy moment) leaves pages reading Redis."""
    writer.write_lists([(ALICE, ranked(["a", "b", "c"]))])
    writer.write_popular("global", ranked(["g1", "g2"], Source.POPULAR))

    async def main() -> None:
        pages = RedisPageCache(redis_url, PREFIX)
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "b", "c", "g1", "g2"]
        lane_command = pages._lane.command
        late = {"left": 0}

        async def command(*args: Any) -> Any:
            if late["left"]:
                late["left"] -= 1
                raise RedisTimeoutError("late")
            return await lane_command(*args)

        monkeypatch.setattr(pages._lane, "command", command)
        for _ in range(3):
            late["left"] = TIMEOUTS_TO_DEGRADE - 1
            for _ in range(TIMEOUTS_TO_DEGRADE - 1):  # each answered from the copy
                assert shown(await pages.read_page(ALICE, ["global"])) == ["g1", "g2"]
            assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "b", "c", "g1", "g2"]
        assert not pages.degraded
        assert pages.timeouts == 3 * (TIMEOUTS_TO_DEGRADE - 1)
        late["left"] = TIMEOUTS_TO_DEGRADE  # a Redis that stopped answering
        for _ in range(TIMEOUTS_TO_DEGRADE):
            await pages.read_page(ALICE, ["global"])
        assert pages.degraded
        await pages.close()

    asyncio.run(main())


def test_a_reply_later_than_the_page_waits_keeps_its_connection(redis_url: str) -> None:
    """The page gives up on a late reply (or is cancelled while it waits), but the reply is
    read in the background and the connection serves the next page with that page's own
    reply: closing it would make the next page connect again, when connects are slowest."""

    def ids(name: str) -> set[int]:
        with redis.Redis.from_url(redis_url) as client:
            return {int(c["id"]) for c in client.client_list() if c["name"] == name}

    async def main() -> None:
        name = f"lane-{uuid.uuid4().hex[:8]}"
        pool = aioredis.ConnectionPool.from_url(redis_url, socket_timeout=2.0, client_name=name)
        late, cancelled = Lane(pool, wait_s=0.02), Lane(pool, wait_s=1.0)
        ids_before = {await late.command("CLIENT", "ID"), await cancelled.command("CLIENT", "ID")}
        started = time.perf_counter()
        with pytest.raises(RedisTimeoutError):
            await late.command("BLPOP", f"{PREFIX}nothing", "0.2")  # answers nil after 0.2 s
        assert time.perf_counter() - started < 0.15  # the page's bound, not the reply's
        reading = asyncio.ensure_future(cancelled.command("BLPOP", f"{PREFIX}nothing", "0.2"))
        await asyncio.sleep(0.05)
        reading.cancel()  # a page whose client went away
        with pytest.raises(asyncio.CancelledError):
            await reading
        await asyncio.sleep(0.4)  # both replies came meanwhile
        assert await late.command("ECHO", "mine") == b"mine"  # not the late nil
        assert await cancelled.command("ECHO", "theirs") == b"theirs"
        assert ids(name) == ids_before  # no connection closed, none opened
        await late.close()
        await cancelled.close()
        await pool.disconnect()

    asyncio.run(main())
