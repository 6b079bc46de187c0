"""The page path's Redis lane and its failover: a slow connect costs one page its read (not
the page's bound, and not every page after it), and only a Redis that keeps timing out or
refuses puts every page on the copy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shopper.adapters.redis_near_cache import ConnectWaitTimeout, Lane
from shopper.adapters.redis_page_cache import TIMEOUTS_TO_DEGRADE, RedisPageCache


class SlowConnection:
    """A connection whose connect takes `connect_s`; it answers each command with its args."""

    def __init__(self, connect_s: float) -> None:
        self.connect_s = connect_s
        self.connected = False
        self.socket_timeout: float | None = 1.0
        self.sent: tuple[Any, ...] = ()

    async def connect(self) -> None:
        await asyncio.sleep(self.connect_s)
        self.connected = True

    async def send_command(self, *args: Any, check_health: bool = True) -> None:
        assert self.connected, "a command on a connection not connected"
        self.sent = args

    async def read_response(self, disconnect_on_error: bool = True) -> Any:
        return self.sent

    async def disconnect(self, nowait: bool = False) -> None:
        self.connected = False


class SlowPool:
    def __init__(self, connect_s: float) -> None:
        self.connection_kwargs = {"socket_timeout": 1.0}
        self.connect_s = connect_s
        self.made: list[SlowConnection] = []

    def make_connection(self) -> SlowConnection:
        self.made.append(SlowConnection(self.connect_s))
        return self.made[-1]


def test_a_slow_connect_costs_one_page_its_read_and_the_next_page_has_the_connection() -> None:
    async def main() -> None:
        pool = SlowPool(connect_s=0.1)
        lane = Lane(pool, wait_s=0.02)  # type: ignore[arg-type]
        started = time.perf_counter()
        with pytest.raises(ConnectWaitTimeout):
            await lane.command("GET", "k")
        assert time.perf_counter() - started < 0.08  # the page's bound, not the connect's
        await asyncio.sleep(0.15)  # the connect went on meanwhile
        assert await lane.command("GET", "k") == ("GET", "k")
        assert len(pool.made) == 1  # the connection the first page began
        assert pool.made[0].socket_timeout == 0.02  # its reads now have the page's bound
        await lane.close()
        assert not pool.made[0].connected

    asyncio.run(main())


def test_a_connect_that_ends_after_the_lane_closed_does_not_join_it() -> None:
    async def main() -> None:
        pool = SlowPool(connect_s=0.05)
        lane = Lane(pool, wait_s=0.01)  # type: ignore[arg-type]
        with pytest.raises(RedisTimeoutError):
            await lane.command("GET", "k")
        await lane.close()
        await asyncio.sleep(0.1)
        pool.connect_s = 0.0
        assert await lane.command("GET", "k") == ("GET", "k")
        assert len(pool.made) == 2  # a new one: the first was never handed out

    asyncio.run(main())


def failing_cache() -> RedisPageCache:
    pages = RedisPageCache("redis://127.0.0.1:1", "t:", follow=False)
    pages.near.synced_at = time.monotonic()  # a current copy to answer from
    return pages


def test_lone_timeouts_answer_their_page_from_the_copy_and_leave_the_rest_on_redis() -> None:
    pages = failing_cache()
    for _ in range(TIMEOUTS_TO_DEGRADE - 1):
        pages._failed_over(["global"], RedisTimeoutError("late"))
    assert not pages.degraded
    assert pages.from_copy == TIMEOUTS_TO_DEGRADE - 1
    assert pages.status()["page_read_timeouts"] == TIMEOUTS_TO_DEGRADE - 1


def test_timeouts_in_a_row_or_a_refused_connection_put_every_page_on_the_copy() -> None:
    pages = failing_cache()
    for _ in range(TIMEOUTS_TO_DEGRADE):
        pages._failed_over(["global"], RedisTimeoutError("hung"))
    assert pages.degraded

    refused = failing_cache()
    refused._failed_over(["global"], RedisConnectionError("refused"))
    assert refused.degraded


def test_waits_for_new_connections_never_put_every_page_on_the_copy() -> None:
    """A burst of pages finding no idle connection (a busy start, more connections than
    before) waits for connects together: not a sign of a hung Redis."""
    pages = failing_cache()
    for _ in range(10 * TIMEOUTS_TO_DEGRADE):
        pages._failed_over(["global"], ConnectWaitTimeout("busy"))
    assert not pages.degraded
    assert pages.timeouts == 10 * TIMEOUTS_TO_DEGRADE
