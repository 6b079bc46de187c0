"""The page path's read of the Redis cache: one async round trip per page.

What every page needs besides the shopper's own list, the live sold-out set and the popular
lists, is kept in a near cache in the API process. A task on the API's event loop
(`redis_change_follower`) follows the change stream (`<prefix>changes`, written in the same
Lua calls that change the sold-out set or a popular list, each entry numbered) with a
blocking XREAD, so an item that sells out is hidden by every API process a few
milliseconds after Redis knows it. A page read is then one MGET of the shopper's list and
its fresh marker, awaited without holding the event loop.

The near cache is trusted only while its follower is current: its last read of the stream
returned less than `max_age_s` ago, and no entry was missed (the numbers run without a
gap; a gap, a trimmed stream or a Redis that came back empty makes it load the sold-out set
again, atomically with the stream's position). Otherwise a page is read as the synchronous
adapter reads it, the sold-out check done in Redis by the page script in the same round
trip, so a stale near cache can never show a sold-out item.

Redis down: a page read that fails (or takes longer than the page lane's short timeout)
puts the page path in degraded mode, where pages are answered from the near cache's copy
of the popular lists (refreshed in the background by the follower whenever one changes)
filtered against the last sold-out set it knew, without waiting for Redis, while that
copy is at most `fallback_max_age_s` old (older: an empty list). Pages go back to Redis
once the follower has reloaded from it. A Redis that comes back empty (its `epoch` key
gone) first gets the last known sold-out set written back, so an item that sold out
before the restart is not shown again; lists missing from it are answered from the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Container, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from shopper.adapters.list_format import decode_list
from shopper.adapters.redis_cache import (
    _READ_PAGE_LUA,
    _SOLD_OUT_CHUNK,
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_TIMEOUT_S,
    CacheKeys,
    page_from_reply,
)
from shopper.adapters.redis_change_follower import FOLLOW_BLOCK_MS, ChangeFollower
from shopper.adapters.redis_near_cache import ConnectWaitTimeout, Lane, NearCache, Script
from shopper.domain.recommendation import PageRead, RecommendationList
from shopper.errors import ShopperError
from shopper.ports.cache import ListKey
from shopper.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

PAGE_TIMEOUT_S = 0.025  # a page read's wait for Redis before it answers from the copy
TIMEOUTS_TO_DEGRADE = 5  # page reads timed out in a row that put every page on the copy
FALLBACK_MAX_AGE_S = 300.0  # the oldest copy pages are answered from while Redis is down


class CacheUnavailable(ShopperError):
    """Redis cannot be read and the near cache's copy is too old to answer from."""


class RedisPageCache:
    """PageCache on Redis (redis.asyncio, hiredis when installed), with a near cache."""

    def __init__(
        self,
        url: str,
        prefix: str = "shopper:",
        max_age_s: float = 1.0,
        follow: bool = True,
        page_timeout_s: float = PAGE_TIMEOUT_S,
        fallback_max_age_s: float = FALLBACK_MAX_AGE_S,
    ) -> None:
        self._url = url
        self._keys = CacheKeys(prefix)
        self._max_age_s = max_age_s
        self._follow_changes = follow
        self._page_timeout_s = page_timeout_s
        self._fallback_max_age_s = fallback_max_age_s
        self.near = NearCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        self._lane = Lane(aioredis.ConnectionPool())  # replaced when bound to a loop
        self._script: Any = None
        self._follower: asyncio.Task[None] | None = None
        self._changes = ChangeFollower(
            self._keys, f"{prefix}epoch", self._follower_current, self._follower_failed
        )
        self._errors = ThrottledLog(log)
        # Pages answered from the near cache's copy until the follower has reloaded.
        self.degraded = False
        self.from_copy = 0  # pages answered from the copy
        self.timeouts = 0  # page reads that timed out
        self.timeouts_in_a_row = 0
        self._connections_lost = False
        self._probe: redis.Redis | None = None  # readiness's own synchronous client

    async def read_page(
        self,
        key: ListKey | None,
        segments: Sequence[str],
        context_item: str | None = None,
        visible: int | None = None,
    ) -> PageRead:
        self._bound()
        near = self.near
        if self.degraded:
            return self._page_from_copy(segments)
        if not near.current(time.monotonic(), self._max_age_s):
            try:
                return await self._read_in_redis(key, segments, context_item)
            except Exception as exc:
                return self._failed_over(segments, exc)
        keys = self._keys
        names = [keys.fresh(key), keys.list(key)] if key is not None else []
        missing = [s for s in segments if s not in near.popular]
        names += [keys.popular(s) for s in missing]
        if context_item:
            names.append(keys.similar(context_item))
        generation = near.generation
        try:
            values: list[bytes | None] = await self._lane.command("MGET", *names) if names else []
        except Exception as exc:
            return self._failed_over(segments, exc)
        if self.timeouts_in_a_row:
            self.timeouts_in_a_row = 0
        sold_out = near.sold_out
        fresh = lkg = similar = None
        if key is not None:
            marker, stored, *values = values
            if stored is not None:
                # All of it with an item on the page: its similar list re-scores the list.
                cut = None if context_item else visible
                lkg = decode_list(stored, cut, sold_out)
                fresh = lkg if marker is not None else None
        if context_item:
            blob = values.pop()
            similar = decode_list(blob) if blob is not None else None
        found = near.found(generation, missing, values) if missing else {}
        popular = [near.popular.get(s, found.get(s)) for s in segments]
        return PageRead(fresh, lkg, tuple(p for p in popular if p is not None), sold_out, similar)

    def _failed_over(self, segments: Sequence[str], exc: Exception) -> PageRead:
        """A page read failed: this page is answered from the copy. Pages go on to the copy
        until the follower has reloaded when Redis refused or dropped the connection, or
        after TIMEOUTS_TO_DEGRADE replies timed out in a row (a hung Redis). A lone timeout,
        or a wait for a new connection (which goes on connecting in the background), is more
        often this process's own busy moment (the event loop late) than Redis's: the next
        page reads Redis as usual."""
        if isinstance(exc, RedisTimeoutError):
            self.timeouts += 1
            if not isinstance(exc, ConnectWaitTimeout):
                self.timeouts_in_a_row += 1
            lone = self.timeouts_in_a_row < TIMEOUTS_TO_DEGRADE
        else:
            lone = False
            self._connections_lost = True  # refused or dropped: the idle ones are suspect
        if not lone:
            self.degraded = True
            # No traceback: formatting one on the event loop would hold up the pages.
            self._errors.failure(
                f"Redis read failed on the page path; pages answered from the copy ({exc!r})",
                traceback=False,
            )
        return self._page_from_copy(segments)

    def _page_from_copy(self, segments: Sequence[str]) -> PageRead:
        """The page from the near cache's copy: popular lists and the last sold-out set."""
        near = self.near
        age = time.monotonic() - near.synced_at
        if age > self._fallback_max_age_s:
            raise CacheUnavailable(
                f"Redis is unreachable and the copy of its lists is {age:.0f} s old "
                f"(page_fallback_max_age_s={self._fallback_max_age_s:.0f})"
            )
        self.from_copy += 1
        fallback = near.fallback
        popular = tuple(fallback[s] for s in segments if s in fallback)
        return PageRead(None, None, popular, near.sold_out)

    async def read_similar(self, item_id: str) -> tuple[RecommendationList | None, Container[str]]:
        self._bound()
        try:
            if self.degraded:
                pass
            elif not self.near.current(time.monotonic(), self._max_age_s):
                page = await self._read_in_redis(None, [], item_id)
                return page.similar, page.sold_out
            else:
                blob = await self._lane.command("GET", self._keys.similar(item_id))
                return (decode_list(blob) if blob is not None else None), self.near.sold_out
        except Exception as exc:
            self._failed_over([], exc)
        # Similar lists are not copied: the page answers without one while Redis is away.
        return None, self._page_from_copy([]).sold_out

    async def wait_current(self, timeout_s: float = 5.0) -> None:
        """Until the near cache holds every change Redis had when called (a stock change's
        202, tests and tools: pages never wait); TimeoutError past `timeout_s`. One read
        of the change counter, then a wait for the follower's next passes: each wakes the
        waiters as it applies what it read."""
        self._bound()
        deadline = time.monotonic() + timeout_s
        seq = int(await self._lane.command("GET", self._keys.changes_seq) or 0)
        while True:
            near = self.near
            caught_up = near.seq is not None and near.seq >= seq
            if caught_up and near.current(time.monotonic(), self._max_age_s):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the near cache did not catch up in {timeout_s} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._changes.next_pass()), left)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self._loop is not asyncio.get_running_loop():
            # Made on a loop that is gone: its connections went with it.
            self._follower = self._client = self._loop = None
            self._lane = Lane(aioredis.ConnectionPool())
            return
        if self._follower is not None:
            # Asked to stop rather than cancelled: a cancel landing inside the client's
            # blocking read can be lost, and the follower stops within one read anyway.
            self._changes.stopping = True
            done, _ = await asyncio.wait({self._follower}, timeout=FOLLOW_BLOCK_MS / 1000 + 2)
            if not done:
                self._follower.cancel()
            self._follower = None
            self._changes.stopping = False
        await self._lane.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._loop = None

    def readiness(self) -> str | None:
        """None when Redis answers and pages read it; else why not (GET /readyz). Called
        off the event loop: a synchronous PING with a short timeout."""
        if self._probe is None:
            self._probe = redis.Redis.from_url(
                self._url, socket_connect_timeout=0.5, socket_timeout=0.5
            )
        try:
            self._probe.ping()
        except redis.RedisError as exc:
            serving = ": pages answered from the API's copy" if self._client is not None else ""
            return f"Redis unreachable ({exc}){serving}"
        if self.degraded:
            return "Redis reachable again; pages still answered from the copy until reloaded"
        return None

    def status(self) -> dict[str, Any]:
        """The near cache, for stats: whether it is current, its age, what it holds."""
        now = time.monotonic()
        near = self.near
        age = now - near.synced_at if near.synced_at > float("-inf") else None
        return {
            "current": near.current(now, self._max_age_s),
            "age_s": round(age, 3) if age is not None else None,
            "sold_out": len(near.sold_out),
            "popular_lists": len(near.popular),
            "reloads": near.reloads,
            "degraded": self.degraded,
            "pages_from_copy": self.from_copy,
            "page_read_timeouts": self.timeouts,
            "sold_out_restored": self._changes.restored,
        }

    # -- the connection, bound to the running event loop ---------------------------------

    def _bound(self) -> aioredis.Redis:
        """The client of the running event loop (a client belongs to one loop: a new loop,
        as a test client makes, gets its own), its follower started with it."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = aioredis.Redis.from_url(
                self._url,
                decode_responses=False,
                socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                health_check_interval=30,
            )
            # The page's own connections: a page waits PAGE_TIMEOUT_S at most for a reply or
            # a new connection (whose connect and handshake go on under the usual bounds).
            self._lane = Lane(
                aioredis.ConnectionPool.from_url(
                    self._url,
                    socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                    socket_timeout=REDIS_CONNECT_TIMEOUT_S,
                ),
                wait_s=self._page_timeout_s,
            )
            self._script = Script(_READ_PAGE_LUA, self._lane)
            self.near = NearCache()
            if self._follow_changes:
                self._follower = loop.create_task(self._changes.run(self._client, self.near))
        return self._client

    async def _read_in_redis(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None
    ) -> PageRead:
        """The page script: lists and their sold-out items from Redis in one round trip."""
        keys = self._keys
        names = [keys.sold_out]
        if key is not None:
            names += [keys.fresh(key), keys.list(key)]
        names += [keys.popular(s) for s in segments]
        if context_item:
            names.append(keys.similar(context_item))
        args = ["1" if key is not None else "0", _SOLD_OUT_CHUNK]
        reply: list[Any] = await self._script(names, args)
        return page_from_reply(reply, segments, context_item)

    # -- what the follower tells the page path -------------------------------------------

    async def _follower_current(self) -> None:
        """The near cache is current: pages on the copy go back to Redis."""
        if not self.degraded:
            return
        if self._connections_lost:
            # The page's idle connections may be to the Redis that went away.
            await self._lane.close()
            self._connections_lost = False
        self.timeouts_in_a_row = 0
        self.degraded = False
        self._errors.recovered("Redis is back: pages read it again")

    def _follower_failed(self) -> None:
        """The follower lost Redis: pages go to the copy until it has reloaded."""
        self.degraded = True
        self._connections_lost = True
        self._errors.failure("following the cache's change stream failed", traceback=False)

    @property
    def restored(self) -> int:
        """Times an empty Redis got the last known sold-out set back."""
        return self._changes.restored
