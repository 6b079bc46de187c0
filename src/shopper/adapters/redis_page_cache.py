"""The page path's read of the Redis cache: one async round trip per page.

What every page needs besides the shopper's own list, the live sold-out set and the popular
lists, is kept in a near cache in the API process. A task on the API's event loop follows
the change stream (`<prefix>changes`, written in the same Lua calls that change the
sold-out set or a popular list, each entry numbered) with a blocking XREAD, so an item that
sells out is hidden by every API process a few milliseconds after Redis knows it. A page
read is then one MGET of the shopper's list and its fresh marker, awaited without holding
the event loop.

The near cache is trusted only while its follower is current: its last read of the stream
returned less than `max_age_s` ago, and no entry was missed (the numbers run without a
gap; a gap, a trimmed stream or a Redis that came back empty makes it load the sold-out set
again, atomically with the stream's position). Otherwise a page is read as the synchronous
adapter reads it, the sold-out check done in Redis by the page script in the same round
trip, so a stale near cache can never show a sold-out item.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from shopper.adapters.redis_cache import (
    _READ_PAGE_LUA,
    _SOLD_OUT_CHUNK,
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_TIMEOUT_S,
    CacheKeys,
    decode_list,
    page_from_reply,
)
from shopper.domain.recommendation import PageRead, RecommendationList
from shopper.ports.cache import ListKey

log = logging.getLogger(__name__)

FOLLOW_BLOCK_MS = 100  # the follower's XREAD wakes at least this often when nothing changes
FOLLOW_COUNT = 1000  # stream entries per XREAD
ERROR_LOG_EVERY_S = 10.0


@dataclass(slots=True)
class NearCache:
    """The API process's copy of the sold-out set and the popular lists read so far."""

    sold_out: set[str] = field(default_factory=set)
    # segment -> its list (None: Redis has none); filled by page reads, refreshed on change
    popular: dict[str, RecommendationList | None] = field(default_factory=dict)
    seq: int | None = None  # number of the last change applied; None: must (re)load
    last_id: bytes = b"0-0"  # stream id of the last change applied
    synced_at: float = float("-inf")  # monotonic time of the last read known complete
    generation: int = 0  # bumped whenever popular lists may have changed
    reloads: int = 0

    def current(self, now: float, max_age_s: float) -> bool:
        return self.seq is not None and now - self.synced_at <= max_age_s

    def apply(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply stream entries in order: a changed popular list is dropped, for the next
        page read to fetch with its own list. Stops at a gap in the numbering (entries lost
        or trimmed), leaving the cache to reload."""
        for entry_id, fields in entries:
            n = int(fields[b"n"])
            if self.seq is None or n != self.seq + 1:
                self.seq = None
                break
            self.seq, self.last_id = n, entry_id
            if b"i" in fields:
                item = fields[b"i"].decode()
                if fields[b"s"] == b"1":
                    self.sold_out.discard(item)
                else:
                    self.sold_out.add(item)
            elif b"p" in fields:
                self.popular.pop(fields[b"p"].decode(), None)
                self.generation += 1  # a page read under way must not store its older copy

    def load(self, seq: int, last_id: bytes, sold_out: set[str]) -> None:
        self.sold_out = sold_out
        self.popular = {}
        self.seq, self.last_id = seq, last_id
        self.generation += 1
        self.reloads += 1


class _Lane:
    """Connections for page reads, each carrying one command at a time: redis-py's own
    connections (hiredis parsing), without its pool's per-command checks, retries and
    timers, which cost as much as the read itself. A connection that fails, or whose
    command was cancelled mid-reply, is closed, never reused."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[Any] = []

    async def command(self, *args: Any) -> Any:
        conn = self._idle.pop() if self._idle else self._new()
        try:
            await conn.send_command(*args, check_health=False)
            reply = await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)  # a cancelled read must not wait here
            raise
        self._idle.append(conn)
        return reply

    def _new(self) -> Any:
        return self._pool.make_connection()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()


class _Script:
    """A Lua script run on a lane: EVALSHA, loaded on the first NOSCRIPT."""

    def __init__(self, source: str, lane: _Lane) -> None:
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._lane = lane

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self._lane.command("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._lane.command("SCRIPT", "LOAD", self._source)
            return await self._lane.command("EVALSHA", self._sha, len(keys), *keys, *args)


class RedisPageCache:
    """PageCache on Redis (redis.asyncio, hiredis when installed), with a near cache."""

    def __init__(
        self, url: str, prefix: str = "shopper:", max_age_s: float = 1.0, follow: bool = True
    ) -> None:
        self._url = url
        self._keys = CacheKeys(prefix)
        self._max_age_s = max_age_s
        self._follow_changes = follow
        self.near = NearCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        self._lane = _Lane(aioredis.ConnectionPool())  # replaced when bound to a loop
        self._script: Any = None
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_error_log = float("-inf")

    async def read_page(
        self,
        key: ListKey | None,
        segments: Sequence[str],
        context_item: str | None = None,
        visible: int | None = None,
    ) -> PageRead:
        self._bound()
        near = self.near
        if not near.current(time.monotonic(), self._max_age_s):
            return await self._read_in_redis(key, segments, context_item)
        keys = self._keys
        names = [keys.fresh(key), keys.list(key)] if key is not None else []
        missing = [s for s in segments if s not in near.popular]
        names += [keys.popular(s) for s in missing]
        if context_item:
            names.append(keys.similar(context_item))
        generation = near.generation
        values: list[bytes | None] = await self._lane.command("MGET", *names) if names else []
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
        found = {
            s: decode_list(b) if b is not None else None
            for s, b in zip(missing, values, strict=True)
        }
        if missing and near.generation == generation:  # else a newer copy may be there
            near.popular.update(found)
        popular = [near.popular.get(s, found.get(s)) for s in segments]
        return PageRead(fresh, lkg, tuple(p for p in popular if p is not None), sold_out, similar)

    async def read_similar(self, item_id: str) -> tuple[RecommendationList | None, Container[str]]:
        self._bound()
        if not self.near.current(time.monotonic(), self._max_age_s):
            page = await self._read_in_redis(None, [], item_id)
            return page.similar, page.sold_out
        blob = await self._lane.command("GET", self._keys.similar(item_id))
        return (decode_list(blob) if blob is not None else None), self.near.sold_out

    async def wait_current(self, timeout_s: float = 5.0) -> None:
        """Until the near cache holds every change Redis has (for tests and tools: pages
        never wait); TimeoutError past `timeout_s`."""
        self._bound()
        deadline = time.monotonic() + timeout_s
        while True:
            seq = int(await self._lane.command("GET", self._keys.changes_seq) or 0)
            near = self.near
            caught_up = near.seq is not None and near.seq >= seq
            if caught_up and near.current(time.monotonic(), self._max_age_s):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the near cache did not catch up in {timeout_s} s")
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            # Made on a loop that is gone: its connections went with it.
            self._follower = self._client = self._loop = None
            self._lane = _Lane(aioredis.ConnectionPool())
            return
        if self._follower is not None:
            # Asked to stop rather than cancelled: a cancel landing inside the client's
            # blocking read can be lost, and the follower stops within one read anyway.
            self._stopping = True
            done, _ = await asyncio.wait({self._follower}, timeout=FOLLOW_BLOCK_MS / 1000 + 2)
            if not done:
                self._follower.cancel()
            self._follower = None
            self._stopping = False
        await self._lane.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._loop = None

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
            self._lane = _Lane(self._client.connection_pool)
            self._script = _Script(_READ_PAGE_LUA, self._lane)
            self.near = NearCache()
            if self._follow_changes:
                self._follower = loop.create_task(self._follow(self._client))
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

    # -- the follower --------------------------------------------------------------------

    async def _follow(self, client: aioredis.Redis) -> None:
        """Keep the near cache current until cancelled; on an error, back off and reload.
        The blocking read has a connection of its own, closed at once when cancelled."""
        lane = _Lane(client.connection_pool)
        try:
            await self._follow_on(lane, self.near)
        finally:
            await lane.close()

    async def _changes_after(
        self, lane: _Lane, last_id: bytes
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The stream's entries after `last_id`, waiting up to FOLLOW_BLOCK_MS for one."""
        reply = await lane.command(
            "XREAD",
            "COUNT",
            FOLLOW_COUNT,
            "BLOCK",
            FOLLOW_BLOCK_MS,
            "STREAMS",
            self._keys.changes,
            last_id,
        )
        if not reply:
            return []
        return [(entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in reply[0][1]]

    async def _follow_on(self, lane: _Lane, near: NearCache) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                if near.seq is None:
                    issued = time.monotonic()
                    await self._load(lane, near)
                    near.synced_at = issued  # the snapshot is current as of then
                issued = time.monotonic()
                near.apply(await self._changes_after(lane, near.last_id))
                if near.seq is not None:
                    near.synced_at = issued
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    return
                near.seq = None
                self._log_error()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _load(self, lane: _Lane, near: NearCache) -> None:
        """The sold-out set and the stream's position, read atomically (MULTI)."""
        keys = self._keys
        await lane.command("MULTI")
        await lane.command("GET", keys.changes_seq)
        await lane.command("XREVRANGE", keys.changes, "+", "-", "COUNT", 1)
        await lane.command("SMEMBERS", keys.sold_out)
        seq, last, members = await lane.command("EXEC")
        last_id = last[0][0] if last else b"0-0"
        near.load(int(seq or 0), last_id, {m.decode() for m in members})

    def _log_error(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log > ERROR_LOG_EVERY_S:
            self._last_error_log = now
            log.exception("following the cache's change stream failed; pages check in Redis")
