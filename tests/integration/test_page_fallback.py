"""The page path with Redis down and back empty, on a Redis of the test's own: pages are
answered at once from the API's copy (the popular lists, the last sold-out set), and a
Redis that comes back empty gets the sold-out set written back before pages read it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
from shopper.adapters.redis_page_cache import CacheUnavailable, RedisPageCache
from shopper.adapters.system_clock import SystemClock
from shopper.domain.event import StockChange
from shopper.domain.recommendation import (
    PageRead,
    RecommendationList,
    ScoredItem,
    Source,
    choose_list,
)
from shopper.ports.cache import ListKey
from tests.chaos.stack import RedisServer

PREFIX = "fb:"
ALICE = ListKey("u:alice", "champion")


def popular(ids: list[str]) -> RecommendationList:
    items = tuple(ScoredItem(i, 1.0 - n / 100) for n, i in enumerate(ids))
    return RecommendationList(items, "champion", Source.POPULAR, time.time(), "popular:global")


def write(url: str, ids: list[str], sold_out: str) -> None:
    client = redis_from_url(url)
    cache = RedisRecommendationCache(client, SystemClock(), 60, 60, prefix=PREFIX)
    cache.write_popular("global", popular(ids))
    cache.set_stock([StockChange(sold_out, False, time.time())])
    client.close()


def shown(page: PageRead) -> list[str]:
    chosen = choose_list(page, 10)
    return chosen.item_ids() if chosen is not None else []


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def test_redis_down_then_back_empty(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    write(server.url, ["a", "b", "c"], sold_out="b")

    async def main() -> None:
        pages = RedisPageCache(server.url, PREFIX, max_age_s=0.5, fallback_max_age_s=30)
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "c"]
        await until(lambda: "global" in pages.near.fallback)

        server.kill()
        slowest = 0.0
        for _ in range(50):  # no page waits for Redis, none fails
            started = time.perf_counter()
            assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "c"]
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.01)
        assert slowest < 0.05, slowest
        assert pages.degraded and pages.from_copy > 0
        assert pages.readiness() is not None

        server.start()  # back with nothing in it
        await until(lambda: not pages.degraded)
        client = server.client()
        try:
            assert client.sismember(f"{PREFIX}sold_out", "b")  # written back
        finally:
            client.close()
        # Redis lost the popular list: the copy stands in, still without the sold-out item.
        assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "c"]
        # Nor does an empty one written before the processor's catalog is rebuilt hide it.
        client = redis_from_url(server.url)
        cache = RedisRecommendationCache(client, SystemClock(), 60, 60, prefix=PREFIX)
        cache.write_popular("global", popular([]))
        client.close()
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, ["global"])) == ["a", "c"]
        # A list with items replaces the copy as usual.
        write(server.url, ["d", "b"], sold_out="b")
        await pages.wait_current()
        assert shown(await pages.read_page(ALICE, ["global"])) == ["d"]
        assert pages.restored == 1
        assert pages.readiness() is None
        await pages.close()

    try:
        asyncio.run(main())
    finally:
        server.kill()


def test_a_copy_older_than_its_bound_is_not_served(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    write(server.url, ["a", "b"], sold_out="b")

    async def main() -> None:
        pages = RedisPageCache(server.url, PREFIX, max_age_s=0.5, fallback_max_age_s=0.3)
        await pages.wait_current()
        await pages.read_page(None, ["global"])
        server.kill()
        await asyncio.sleep(0.5)
        with pytest.raises(CacheUnavailable, match="page_fallback_max_age_s"):
            await pages.read_page(None, ["global"])
        await pages.close()

    try:
        asyncio.run(main())
    finally:
        server.kill()
