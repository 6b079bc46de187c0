"""The page path's near cache of Redis and its connections (`redis_page_cache.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shopper.adapters.list_format import decode_list
from shopper.domain.recommendation import RecommendationList


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
    # The last copy of each popular list seen (segment -> list), for pages while Redis is
    # down or lost it; `stale`: segments the follower is to fetch again.
    fallback: dict[str, RecommendationList] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

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
                segment = fields[b"p"].decode()
                self.popular.pop(segment, None)
                self.stale.add(segment)
                self.generation += 1  # a page read under way must not store its older copy

    def found(
        self, generation: int, missing: list[str], values: list[bytes | None]
    ) -> dict[str, RecommendationList | None]:
        """Popular lists a page read for the first time (or since they changed), into the
        cache; one Redis does not have, or has empty, is answered from the copy (Redis lost
        it, and the processor wrote one before its catalog was rebuilt)."""
        found: dict[str, RecommendationList | None] = {}
        for segment, blob in zip(missing, values, strict=True):
            found[segment] = self.keep(segment, decode_list(blob) if blob is not None else None)
        if self.generation == generation:  # else a newer copy may be there
            self.popular.update(found)
        return found

    def keep(self, segment: str, rec: RecommendationList | None) -> RecommendationList | None:
        """The list to show for `segment` given what Redis has (`rec`): that list, kept as
        the copy, unless it is missing or empty where the copy has items (then the copy:
        filtered against the live sold-out set as any list, it shows no sold-out item)."""
        if rec is not None and (rec.items or segment not in self.fallback):
            self.fallback[segment] = rec
            return rec
        return self.fallback.get(segment, rec)

    def load(self, seq: int, last_id: bytes, sold_out: set[str]) -> None:
        self.sold_out = sold_out
        self.popular = {}
        self.stale |= self.fallback.keys()
        self.seq, self.last_id = seq, last_id
        self.generation += 1
        self.reloads += 1


class ConnectWaitTimeout(RedisTimeoutError):
    """A page's wait for a new connection ran out (the connect goes on): more often the
    event loop busy with other pages than Redis slow to accept."""


class Lane:
    """Connections for page reads, each carrying one command at a time: redis-py's own
    connections (hiredis parsing), without its pool's per-command checks, retries and
    timers, which cost as much as the read itself. A connection that fails is closed,
    never reused.

    With `wait_s` (the page's bound), a command waits at most that long for its reply,
    and at most that long for a new connection (TimeoutError either way). Neither is
    abandoned: a connect and its handshake go on in the background, and so does the read
    of a late reply (the parser resumes where it stopped), each under the pool's own
    (longer) timeout, and the connection then joins the idle ones. A busy moment costs
    one page its read, not a connection: closing one would make the next page connect
    again, at the moment connects are slowest."""

    def __init__(self, pool: aioredis.ConnectionPool, wait_s: float | None = None) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        self._wait_s = wait_s
        self._late_s = pool.connection_kwargs.get("socket_timeout")  # a late reply's bound
        self._pending: set[asyncio.Task[None]] = set()  # connects and late replies
        self._generation = 0  # bumped by close: a connection pending before it does not join

    async def command(self, *args: Any) -> Any:
        conn = self._idle.pop() if self._idle else await self._connection()
        try:
            await conn.send_command(*args, check_health=False)
        except BaseException:
            await conn.disconnect(nowait=True)  # part of a command may have been sent
            raise
        try:
            reply = await conn.read_response(disconnect_on_error=False)
        except ResponseError:
            self._idle.append(conn)  # an error reply (NOSCRIPT): the connection is sound
            raise
        except (RedisTimeoutError, asyncio.CancelledError):
            if self._wait_s is None:
                await conn.disconnect(nowait=True)
            else:  # the reply is on its way: read it in the background, keep the connection
                self._join_when_done(conn, self._late_reply(conn))
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        self._idle.append(conn)
        return reply

    async def _connection(self) -> Any:
        conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
        if self._wait_s is None:
            return conn  # connects on its first command
        task = asyncio.ensure_future(self._connect(conn))
        try:
            await asyncio.wait_for(asyncio.shield(task), self._wait_s)
        except TimeoutError:
            raise ConnectWaitTimeout("connecting took longer than a page waits") from None
        finally:
            if not task.done():  # the page gave up on it (or was cancelled): it goes on
                self._join_when_done(conn, task)
        return conn

    async def _connect(self, conn: Any) -> None:
        await conn.connect()
        conn.socket_timeout = self._wait_s  # from now on, a page's reads

    async def _late_reply(self, conn: Any) -> None:
        """Read the reply a page gave up on, under the pool's timeout (closing the
        connection if that runs out too); the page's bound applies again after."""
        conn.socket_timeout = self._late_s
        with contextlib.suppress(ResponseError):  # an error reply read in full is no failure
            await conn.read_response()
        conn.socket_timeout = self._wait_s

    def _join_when_done(self, conn: Any, pending: Any) -> None:
        task = asyncio.ensure_future(pending)
        self._pending.add(task)
        generation = self._generation
        task.add_done_callback(lambda done: self._joined(conn, done, generation))

    def _joined(self, conn: Any, task: asyncio.Task[None], generation: int) -> None:
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            return  # it failed (and is closed): the next page that needs one opens another
        if generation == self._generation:
            self._idle.append(conn)
        else:  # closed meanwhile
            self._pending.add(closing := task.get_loop().create_task(conn.disconnect()))
            closing.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Close every connection; the lane can be used again (with new ones)."""
        self._generation += 1
        for task in list(self._pending):
            task.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()


class Script:
    """A Lua script run on a lane: EVALSHA, loaded on the first NOSCRIPT."""

    def __init__(self, source: str, lane: Lane) -> None:
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._lane = lane

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self._lane.command("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._lane.command("SCRIPT", "LOAD", self._source)
            return await self._lane.command("EVALSHA", self._sha, len(keys), *keys, *args)
