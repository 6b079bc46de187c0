"""Redis recommendation cache: compact binary lists, the page read in one Lua round trip.

Keys and encodings are documented in docs/redis-keys.md. A list is stored once per
(subject, variant) under `list:` with the last-known-good TTL; a tiny `fresh:` marker with
the fresh TTL says whether that same list still counts as fresh. Both expire in Redis itself.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from shopper.adapters.list_format import HEADER, decode_list, encode_list, written_at_of
from shopper.adapters.redis_wire import Command, run_transactions
from shopper.domain.event import StockChange
from shopper.domain.recommendation import PageRead, RecommendationList
from shopper.ports.cache import ListKey
from shopper.ports.clock import Clock

REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_TIMEOUT_S = 5.0
_SOLD_OUT_CHUNK = 1000  # ids per SMISMEMBER call inside the script (Lua unpack limit)

# KEYS[1]: sold-out set; with ARGV[1] == '1', KEYS[2] and KEYS[3]: fresh marker and stored
# list; every further key: another list (popular lists; an item's similar list). Returns
# {fresh marker exists, list, the further lists that exist..., sold-out ids among all
# their items}.
_READ_PAGE_LUA = """
local ids, seen = {}, {}
local function collect(blob)
  local n, vlen, llen = struct.unpack('<HHH', blob, 19)
  local pos = 25 + vlen + llen + 4 * n
  for _ = 1, n do
    local len = string.byte(blob, pos)
    if len < 128 then
      pos = pos + 1
    else
      len = (len - 128) + 128 * string.byte(blob, pos + 1)
      pos = pos + 2
    end
    local id = string.sub(blob, pos, pos + len - 1)
    pos = pos + len
    if not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
end
local out = {0, false}
local first = 2
if ARGV[1] == '1' then
  out[1] = redis.call('EXISTS', KEYS[2])
  out[2] = redis.call('GET', KEYS[3])
  if out[2] then collect(out[2]) end
  first = 4
end
for i = first, #KEYS do
  local blob = redis.call('GET', KEYS[i])
  out[#out + 1] = blob
  if blob then collect(blob) end
end
local sold = {}
local chunk = tonumber(ARGV[2])
for start = 1, #ids, chunk do
  local stop = math.min(start + chunk - 1, #ids)
  local flags = redis.call('SMISMEMBER', KEYS[1], unpack(ids, start, stop))
  for i = 1, #flags do
    if flags[i] == 1 then sold[#sold + 1] = ids[start + i - 1] end
  end
end
out[#out + 1] = sold
return out
"""


# KEYS[1]: sold-out set, KEYS[2]: hash item -> ts of the change applied, KEYS[3]: the
# change stream, KEYS[4]: its sequence counter; ARGV: the stream's approximate length bound,
# the latest time an applied change can have, then triples of item, ts, in stock ('1'/'0').
# A change older than the applied one is ignored; one that flips the item's state is
# appended to the change stream (numbered, so a reader sees a gap) for the API processes'
# near caches. Times are server receive times (`domain.event.order_time`): an applied time
# past the bound was a client's (stored by an older version) and yields to any change.
_SET_STOCK_LUA = """
local latest = tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local item, ts = ARGV[i], tonumber(ARGV[i + 1])
  local applied = tonumber(redis.call('HGET', KEYS[2], item) or '')
  if not applied or applied <= ts or applied > latest then
    redis.call('HSET', KEYS[2], item, ARGV[i + 1])
    local flipped
    if ARGV[i + 2] == '1' then
      flipped = redis.call('SREM', KEYS[1], item)
    else
      flipped = redis.call('SADD', KEYS[1], item)
    end
    if flipped == 1 then
      local n = redis.call('INCR', KEYS[4])
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'i', item, 's', ARGV[i + 2])
    end
  end
end
return 0
"""

# KEYS[1]: a popular list, KEYS[2]: the change stream, KEYS[3]: its sequence counter; ARGV:
# the list, the stream's length bound, the segment.
_WRITE_POPULAR_LUA = """
redis.call('SET', KEYS[1], ARGV[1])
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'n', n, 'p', ARGV[3])
return n
"""

# The change stream keeps about this many entries: a near cache further behind reloads.
CHANGES_MAX_LEN = 100_000
# A stock change's time is a server's receive time: one stored this far past this server's
# clock can only be a client's (an older version ordered by the event's own `ts`).
STOCK_TS_AHEAD_S = 86_400.0


def redis_from_url(url: str) -> redis.Redis:
    """A binary-safe client for `redis://host:port/db` (or `rediss://`)."""
    # Bounded waits: a Redis that hangs must not hang the page (which then serves an empty
    # list) nor stall the processor forever (which retries its batch).
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        health_check_interval=30,
    )


def page_from_reply(
    reply: list[Any], segments: Sequence[str], context_item: str | None
) -> PageRead:
    """The page script's reply as a PageRead."""
    fresh_marker, stored, *lists, sold = reply
    # A missing list comes back as None in its place (Lua's false).
    similar = lists.pop() if context_item and len(lists) > len(segments) else None
    lkg = decode_list(stored) if stored is not None else None
    return PageRead(
        fresh=lkg if fresh_marker else None,
        last_known_good=lkg,
        popular=tuple(decode_list(b) for b in lists if b is not None),
        sold_out=frozenset(i.decode() for i in sold),
        similar=decode_list(similar) if similar is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ListFootprint:
    """What one stored user list costs in Redis, in bytes."""

    value_bytes: int  # the encoded list itself
    memory_usage: int  # MEMORY USAGE of the list key: value, key name, overheads
    marker_memory_usage: int  # MEMORY USAGE of its fresh marker (0 once expired)

    @property
    def total(self) -> int:
        return self.memory_usage + self.marker_memory_usage


class RedisRecommendationCache:
    """RecommendationCache on Redis. Thread-safe (redis-py's connection pool)."""

    def __init__(
        self,
        client: redis.Redis,
        clock: Clock,
        fresh_ttl_s: float,
        lkg_ttl_s: float,
        prefix: str = "shopper:",
    ) -> None:
        self._client = client
        self._clock = clock
        self._fresh_ms = _ms(fresh_ttl_s)
        # The stored list is the last-known-good copy; it must outlive the fresh marker.
        self._list_ms = _ms(max(fresh_ttl_s, lkg_ttl_s))
        self._prefix = prefix
        self._sold_out_key = f"{prefix}sold_out"
        self._keys = CacheKeys(prefix)
        self._read_page = client.register_script(_READ_PAGE_LUA)
        self._set_stock = client.register_script(_SET_STOCK_LUA)
        self._write_popular = client.register_script(_WRITE_POPULAR_LUA)
        self._similar_ms = _ms(lkg_ttl_s)

    def write_lists(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        if not lists:
            return
        now = self._clock.now()
        commands: list[Command] = []
        for key, ranked in lists:
            blob = encode_list(ranked, now)
            commands.append(("SET", self._list_key(key), blob, "PX", self._list_ms))
            commands.append(("SET", self._fresh_key(key), b"1", "PX", self._fresh_ms))
        # A MULTI/EXEC per 100 lists, all in one round trip (`redis_wire`): each list lands
        # with its fresh marker, and a page read sharing this Redis waits for 100 lists'
        # writes at most (a few tenths of a millisecond), not a whole micro-batch's.
        per_transaction = 200  # commands: 100 lists
        transactions = [
            commands[start : start + per_transaction]
            for start in range(0, len(commands), per_transaction)
        ]
        run_transactions(self._client, transactions)

    def write_popular(self, segment: str, ranked: RecommendationList) -> None:
        keys = self._keys
        self._write_popular(
            keys=[keys.popular(segment), keys.changes, keys.changes_seq],
            args=[encode_list(ranked, self._clock.now()), CHANGES_MAX_LEN, segment],
        )

    def set_stock(self, changes: Sequence[StockChange]) -> None:
        if not changes:
            return
        args: list[str | int] = [CHANGES_MAX_LEN, repr(self._clock.now() + STOCK_TS_AHEAD_S)]
        for change in changes:
            args += [change.item_id, repr(change.ts), "1" if change.in_stock else "0"]
        keys = self._keys
        self._set_stock(
            keys=[keys.sold_out, keys.stock_ts, keys.changes, keys.changes_seq], args=args
        )

    def sold_out_among(self, item_ids: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return set()
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(wanted), _SOLD_OUT_CHUNK):
            pipe.smismember(self._sold_out_key, wanted[start : start + _SOLD_OUT_CHUNK])
        flags = [flag for reply in pipe.execute() for flag in reply]
        return {item for item, flag in zip(wanted, flags, strict=True) if flag}

    def read_page(
        self, key: ListKey | None, segments: Sequence[str], context_item: str | None = None
    ) -> PageRead:
        keys = [self._sold_out_key]
        if key is not None:
            keys += [self._fresh_key(key), self._list_key(key)]
        keys += [self._popular_key(s) for s in segments]
        if context_item:
            keys.append(self._similar_key(context_item))  # last: its reply is the last list
        reply: list[Any] = self._read_page(
            keys=keys, args=["1" if key is not None else "0", _SOLD_OUT_CHUNK]
        )
        return page_from_reply(reply, segments, context_item)

    def write_similar(self, lists: Sequence[tuple[str, RecommendationList]]) -> None:
        if not lists:
            return
        now = self._clock.now()
        pipe = self._client.pipeline(transaction=False)  # each list stands alone
        for item_id, ranked in lists:
            pipe.set(self._similar_key(item_id), encode_list(ranked, now), px=self._similar_ms)
        pipe.execute()

    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        # The page script without a shopper's list: the similar list is its one further list.
        reply: list[Any] = self._read_page(
            keys=[self._sold_out_key, self._similar_key(item_id)], args=["0", _SOLD_OUT_CHUNK]
        )
        _, _, *found, sold = reply  # found: [list] or [None] (or [], as Lua may leave it)
        blob = next((b for b in found if b is not None), None)
        return (
            decode_list(blob) if blob is not None else None,
            frozenset(i.decode() for i in sold),
        )

    def list_age(self, key: ListKey) -> float | None:
        head = cast(bytes, self._client.getrange(self._list_key(key), 0, HEADER.size - 1))
        written_at = written_at_of(head)
        return None if written_at is None else float(self._clock.now() - written_at)

    def footprint(self, key: ListKey) -> ListFootprint | None:
        """Bytes one stored list takes (for benchmarks), or None if it is not stored."""
        pipe = self._client.pipeline(transaction=False)
        pipe.strlen(self._list_key(key))
        pipe.memory_usage(self._list_key(key), samples=0)
        pipe.memory_usage(self._fresh_key(key), samples=0)
        size, usage, marker = pipe.execute()
        if not usage:
            return None
        return ListFootprint(int(size), int(usage), int(marker or 0))

    def _list_key(self, key: ListKey) -> str:
        return self._keys.list(key)

    def _fresh_key(self, key: ListKey) -> str:
        return self._keys.fresh(key)

    def _popular_key(self, segment: str) -> str:
        return self._keys.popular(segment)

    def _similar_key(self, item_id: str) -> str:
        return self._keys.similar(item_id)


class CacheKeys:
    """The Redis key names under one prefix (docs/redis-keys.md), shared by the writer and
    the page path's reader."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sold_out = f"{prefix}sold_out"
        self.stock_ts = f"{prefix}stock_ts"
        self.changes = f"{prefix}changes"  # stream: stock flips and popular list writes
        self.changes_seq = f"{prefix}changes_seq"  # numbers the stream's entries

    def list(self, key: ListKey) -> str:
        return f"{self.prefix}list:{key.variant}:{key.subject}"

    def fresh(self, key: ListKey) -> str:
        return f"{self.prefix}fresh:{key.variant}:{key.subject}"

    def popular(self, segment: str) -> str:
        return f"{self.prefix}popular:{segment}"

    def similar(self, item_id: str) -> str:
        return f"{self.prefix}similar:{item_id}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
