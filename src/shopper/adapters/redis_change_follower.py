"""The near cache's follower: a task on the API's event loop that keeps a `NearCache`
current from the cache's change stream (`<prefix>changes`).

It loads the sold-out set with the stream's position (atomically, MULTI), then reads the
stream with a blocking XREAD that wakes at least every FOLLOW_BLOCK_MS, applying each entry
in number order. A gap in the numbers, a trimmed stream or an error makes it load again
(after a backoff on errors). A Redis that comes back empty (its `epoch` key gone) first
gets back the last sold-out set this process knew, in the same transaction that marks it
with a new epoch. Each pass that leaves the near cache current tells the page path
(`on_current`, where it leaves degraded mode) and wakes whoever waits for the next pass
(`wait_current`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shopper.adapters.list_format import decode_list
from shopper.adapters.redis_cache import CacheKeys
from shopper.adapters.redis_near_cache import Lane, NearCache

log = logging.getLogger(__name__)

FOLLOW_BLOCK_MS = 100  # the follower's XREAD wakes at least this often when nothing changes
FOLLOW_COUNT = 1000  # stream entries per XREAD


class ChangeFollower:
    """Follows the change stream into a near cache, one `run` per event loop."""

    def __init__(
        self,
        keys: CacheKeys,
        epoch_key: str,
        on_current: Callable[[], Awaitable[None]],
        on_failed: Callable[[], None],
    ) -> None:
        self._keys = keys
        self._epoch_key = epoch_key
        self._on_current = on_current
        self._on_failed = on_failed
        self.stopping = False  # asked to stop: `run` returns within one read
        self.restored = 0  # times an empty Redis got the last known sold-out set back
        self._epoch: bytes | None = None  # the Redis "life" the near cache was loaded from
        self._passed: asyncio.Future[None] | None = None

    async def run(self, client: aioredis.Redis, near: NearCache) -> None:
        """Keep `near` current until stopped or cancelled; on an error, back off and reload.
        The blocking read has a connection of its own, closed at once when cancelled."""
        lane = Lane(client.connection_pool)
        try:
            await self._follow_on(lane, near)
        finally:
            await lane.close()

    def next_pass(self) -> asyncio.Future[None]:
        """Done when a pass next leaves the near cache current (shared by every waiter)."""
        loop = asyncio.get_running_loop()
        passed = self._passed
        if passed is None or passed.done() or passed.get_loop() is not loop:
            passed = self._passed = loop.create_future()  # a future belongs to one loop
        return passed

    async def changes_after(
        self, lane: Lane, last_id: bytes
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

    async def _follow_on(self, lane: Lane, near: NearCache) -> None:
        backoff = 0.1
        while not self.stopping:
            try:
                if near.seq is None:
                    issued = time.monotonic()
                    await self._load(lane, near)
                    near.synced_at = issued  # the snapshot is current as of then
                issued = time.monotonic()
                near.apply(await self.changes_after(lane, near.last_id))
                if near.seq is not None:
                    near.synced_at = issued
                    if near.stale:
                        await self._refresh_copy(lane, near)
                    await self._on_current()
                    self._wake_waiters()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.stopping:
                    return
                near.seq = None
                self._on_failed()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _wake_waiters(self) -> None:
        passed, self._passed = self._passed, None
        if passed is not None and not passed.done():
            passed.set_result(None)

    async def _refresh_copy(self, lane: Lane, near: NearCache) -> None:
        """Fetch the popular lists that changed, for the copy pages fall back on."""
        segments = sorted(near.stale)
        near.stale.clear()
        blobs = await lane.command("MGET", *[self._keys.popular(s) for s in segments])
        for segment, blob in zip(segments, blobs, strict=True):
            near.keep(segment, decode_list(blob) if blob is not None else None)

    async def _load(self, lane: Lane, near: NearCache) -> None:
        """The sold-out set and the stream's position, read atomically (MULTI). A Redis
        without the epoch key is a new one (or one restarted empty): it gets the last
        sold-out set known here written back before pages read it."""
        keys = self._keys
        await lane.command("MULTI")
        await lane.command("GET", keys.changes_seq)
        await lane.command("XREVRANGE", keys.changes, "+", "-", "COUNT", 1)
        await lane.command("SMEMBERS", keys.sold_out)
        await lane.command("GET", self._epoch_key)
        seq, last, members, epoch = await lane.command("EXEC")
        sold_out = {m.decode() for m in members}
        if epoch is None:
            epoch, written_back = await self._restore(lane, near.sold_out)
            sold_out |= written_back
        self._epoch = epoch
        last_id = last[0][0] if last else b"0-0"
        near.load(int(seq or 0), last_id, sold_out)

    async def _restore(self, lane: Lane, known: set[str]) -> tuple[bytes, set[str]]:
        """Mark this Redis with an epoch; if it lost the sold-out set this process knew
        (`known`: it was loaded from Redis before, which came back empty), write that set
        back first, in the same transaction. Returns the epoch and the items written."""
        lost = set(known) if self._epoch is not None else set()
        await lane.command("MULTI")
        if lost:
            await lane.command("SADD", self._keys.sold_out, *lost)
        await lane.command("SET", self._epoch_key, uuid.uuid4().hex, "NX")
        await lane.command("GET", self._epoch_key)
        *_, epoch = await lane.command("EXEC")
        if lost:
            self.restored += 1
            log.warning("Redis came back without its data: %d sold-out items put back", len(lost))
        return bytes(epoch), lost
