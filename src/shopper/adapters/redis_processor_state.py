"""Redis processor state: sessions, catalog, decayed popularity and co-occurrence counters.

Keys and encodings are documented in docs/redis-keys.md. `apply` is one MULTI/EXEC
transaction, so a micro-batch's effects and its event ids land together or not at all:
that is what makes an at-least-once redelivery change nothing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any, cast

import redis
from redis.client import Pipeline

from shopper.adapters.memo import StaleMemo
from shopper.domain.attribution import OutcomeDelta
from shopper.domain.experiment_stats import SessionOutcome
from shopper.domain.item import Item
from shopper.domain.ranking import cosine
from shopper.domain.segment import GLOBAL_SEGMENT
from shopper.domain.session import SessionState
from shopper.ports.clock import Clock
from shopper.ports.processor_state import StateChanges

# Forward-decayed sums grow as 2**(age / half-life); rescale long before doubles overflow
# (2**1024), exactly as the in-memory state does.
RESCALE_AFTER_HALF_LIVES = 500.0

# KEYS[1]: landmark, KEYS[2]: set of segment names, KEYS[3...]: the batch's hits zsets.
# ARGV: half-life, rescale-after (s), hits key prefix, then (key index, item, weight, ts)
# per hit. The landmark is read and moved inside the script, so every processor adds
# weights against the same landmark. A rescale walks every segment's zset, including
# segments this batch does not touch (named from KEYS[2]): standalone Redis only.
_OUTCOME_CHUNK = 1000  # sessions read per pipeline for the experiment report

_HITS_LUA = """
local half_life = tonumber(ARGV[1])
local rescale_after = tonumber(ARGV[2])
local prefix = ARGV[3]
local ln2 = math.log(2)
local landmark = tonumber(redis.call('GET', KEYS[1]) or '')
local function rescale(new_landmark, raw)
  local factor = math.exp(ln2 * (landmark - new_landmark) / half_life)
  for _, segment in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local key = prefix .. segment
    local total = redis.call('ZCARD', key)
    for start = 0, total - 1, 500 do
      local flat = redis.call('ZRANGE', key, start, start + 499, 'WITHSCORES')
      local args = {}
      for i = 1, #flat, 2 do
        args[#args + 1] = tonumber(flat[i + 1]) * factor
        args[#args + 1] = flat[i]
      end
      if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    end
  end
  landmark = new_landmark
  redis.call('SET', KEYS[1], raw)
end
for i = 4, #ARGV, 4 do
  local ts = tonumber(ARGV[i + 3])
  if landmark == nil then
    landmark = ts
    redis.call('SET', KEYS[1], ARGV[i + 3])
  end
  if ts - landmark > rescale_after then rescale(ts, ARGV[i + 3]) end
  local weight = tonumber(ARGV[i + 2]) * math.exp(ln2 * (ts - landmark) / half_life)
  redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], weight, ARGV[i + 1])
end
return 0
"""

# KEYS: co-occurrence rows touched by the batch; ARGV[1]: the cap. A row is trimmed back
# to its `cap` largest counts once it holds twice as many, so new pairs get room to grow.
_TRIM_LUA = """
local cap = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local card = redis.call('ZCARD', key)
  if card > 2 * cap then redis.call('ZREMRANGEBYRANK', key, 0, card - cap - 1) end
end
return 0
"""

# KEYS[1]: the item's co-occurrence row, KEYS[2]: the volume zset; ARGV[1]: the item.
# Returns {row as member, count pairs, volumes of the item then of each row member}.
_NEIGHBOURS_LUA = """
local row = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local volumes = redis.call('ZMSCORE', KEYS[2], ARGV[1])
for start = 1, #row, 2000 do
  local ids = {}
  for i = start, math.min(start + 1999, #row), 2 do ids[#ids + 1] = row[i] end
  for _, v in ipairs(redis.call('ZMSCORE', KEYS[2], unpack(ids))) do
    volumes[#volumes + 1] = v
  end
end
return {row, volumes}
"""


class RedisProcessorState:
    """ProcessorState on Redis, shared by every processor process of one shop."""

    def __init__(
        self,
        client: redis.Redis,
        clock: Clock,
        half_life_s: float,
        prefix: str = "shopper:",
        session_ttl_s: float = 7 * 86400.0,
        dedup_ttl_s: float = 3600.0,
        co_occurrence_cap: int = 500,
        staleness_s: float = 1.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._half_life = half_life_s
        self._prefix = prefix
        self._session_ms = max(1, round(session_ttl_s * 1000))
        self._dedup_s = dedup_ttl_s
        self._co_cap = co_occurrence_cap
        self._landmark_key = f"{prefix}hits_landmark"
        self._segments_key = f"{prefix}hits_segments"
        self._volume_key = f"{prefix}volume"
        self._outcomes_key = f"{prefix}outcomes"  # session -> last change, for the report
        self._neighbours = client.register_script(_NEIGHBOURS_LUA)
        # The processor asks for neighbours once per recent item and for popularity once per
        # shopper; as in the in-memory state, an answer is reused for `staleness_s`.
        self._neighbour_memo = StaleMemo(staleness_s)

    def applied(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        pipe = self._client.pipeline(transaction=False)
        # An id is looked up in the current bucket and both neighbours, so processors whose
        # clocks straddle a bucket boundary still see each other's ids.
        bucket = math.floor(self._clock.now() / self._dedup_s)
        for b in (bucket - 1, bucket, bucket + 1):
            pipe.smismember(self._applied_key(b), list(event_ids))
        found: set[str] = set()
        for flags in pipe.execute():
            found.update(e for e, hit in zip(event_ids, flags, strict=True) if hit)
        return found

    def sessions(self, subjects: Iterable[str]) -> dict[str, SessionState]:
        wanted = list(subjects)
        if not wanted:
            return {}
        blobs = _mget(self._client, [self._session_key(s) for s in wanted])
        return {
            s: SessionState.from_dict(json.loads(b)) if b is not None else SessionState(subject=s)
            for s, b in zip(wanted, blobs, strict=True)
        }

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return {}
        blobs = _mget(self._client, [self._item_key(i) for i in wanted])
        return {i: decode_item(b) for i, b in zip(wanted, blobs, strict=True) if b is not None}

    def apply(self, changes: StateChanges) -> None:
        # Everything is encoded before the transaction is sent: a bad value fails the whole
        # batch here, never half of it inside Redis.
        pipe = self._client.pipeline(transaction=True)
        if changes.event_ids:
            now = self._clock.now()
            bucket = math.floor(now / self._dedup_s)
            key = self._applied_key(bucket)
            pipe.sadd(key, *changes.event_ids)
            # Kept until the end of the next bucket: at least one full dedup TTL. Relative,
            # so a processor clock that differs from the server's cannot expire it early.
            ttl_ms = math.ceil(((bucket + 2) * self._dedup_s - now) * 1000)
            pipe.pexpire(key, ttl_ms)
        for subject, session in changes.sessions.items():
            pipe.set(self._session_key(subject), _compact(session.to_dict()), px=self._session_ms)
        for item_id, item in changes.items.items():
            pipe.set(self._item_key(item_id), encode_item(item))
        if changes.hits:
            self._queue_hits(pipe, changes.hits)
        if changes.outcomes:
            self._queue_outcomes(pipe, changes.outcomes)
        pairs: list[tuple[str, str, float]] = []
        if changes.co_occurrences:
            pairs = self._queue_co_occurrences(pipe, changes.co_occurrences)
        first_pair = len(pipe) - len(pairs) - 1
        results = pipe.execute()
        for (a, _, weight), total in zip(pairs, results[first_pair:], strict=False):
            if float(total) == weight:
                # A new neighbour makes a remembered row wrong, not just a little stale: a
                # list written from it would miss the pair until the shopper acts again.
                self._neighbour_memo.drop(a)

    def outcomes(self) -> list[SessionOutcome]:
        now = self._clock.now()
        since = now - self._session_ms / 1000
        sessions = cast(list[bytes], self._client.zrangebyscore(self._outcomes_key, since, "+inf"))
        out = []
        for start in range(0, len(sessions), _OUTCOME_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for session in sessions[start : start + _OUTCOME_CHUNK]:
                pipe.hgetall(self._outcome_key(session.decode()))
            for record in pipe.execute():
                if record.get(b"v"):
                    out.append(
                        SessionOutcome(
                            record[b"v"].decode(),
                            int(record.get(b"i", 0)),
                            int(record.get(b"c", 0)),
                            record.get(b"ca") == b"1",
                            record.get(b"co") == b"1",
                            float(record.get(b"r", 0.0)),
                        )
                    )
        return out

    def _queue_outcomes(self, pipe: Pipeline, outcomes: dict[str, OutcomeDelta]) -> None:
        """Each session's delta onto its hash (counters add up; the first variant
        stays), the session into the report's index; both kept as long as sessions."""
        now = self._clock.now()
        for session, d in outcomes.items():
            key = self._outcome_key(session)
            if d.variant:
                pipe.hsetnx(key, "v", d.variant)
            if d.impressions:
                pipe.hincrby(key, "i", d.impressions)
            if d.clicks:
                pipe.hincrby(key, "c", d.clicks)
            if d.carted:
                pipe.hset(key, "ca", "1")
            if d.converted:
                pipe.hset(key, "co", "1")
            if d.revenue:
                pipe.hincrbyfloat(key, "r", d.revenue)
            pipe.pexpire(key, self._session_ms)
        pipe.zadd(self._outcomes_key, dict.fromkeys(outcomes, now))
        pipe.zremrangebyscore(self._outcomes_key, "-inf", now - self._session_ms / 1000)

    def popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        """Top items of a segment (the processor reads it once per micro-batch)."""
        if n <= 0:
            return []  # ZREVRANGE 0 -1 would mean "all"
        return self._read_popular(segment, n)

    def neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        """Cosine neighbours, at most `staleness_s` old (new pairs this state added aside)."""
        return self._neighbour_memo.get(item_id, n, self._read_neighbours)

    def neighbours_many(
        self, item_ids: Collection[str], n: int
    ) -> dict[str, list[tuple[str, float]]]:
        """`neighbours` of several items, the ones not remembered in one pipeline."""
        return self._neighbour_memo.get_many(item_ids, n, self._read_neighbours_many)

    def _read_neighbours_many(
        self, item_ids: list[str], n: int
    ) -> dict[str, list[tuple[str, float]]]:
        pipe = self._client.pipeline(transaction=False)
        for item_id in item_ids:
            self._neighbours(
                keys=[self._co_key(item_id), self._volume_key], args=[item_id], client=pipe
            )
        replies = pipe.execute()
        return {i: _cosines(reply, n) for i, reply in zip(item_ids, replies, strict=True)}

    def _read_popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        # Equal scores come back in reverse lexicographic order, as the in-memory state
        # breaks ties (largest (score, id) first).
        rows = cast(
            list[tuple[bytes, float]],
            self._client.zrevrange(self._hits_key(segment), 0, n - 1, withscores=True),
        )
        return [(member.decode(), float(score)) for member, score in rows]

    def _read_neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        reply: list[Any] = self._neighbours(
            keys=[self._co_key(item_id), self._volume_key], args=[item_id]
        )
        return _cosines(reply, n)

    def _queue_hits(self, pipe: Pipeline, hits: list[tuple[str, str, float, float]]) -> None:
        segments = list(dict.fromkeys(segment for segment, _, _, _ in hits))
        index = {segment: i + 3 for i, segment in enumerate(segments)}  # Lua KEYS are 1-based
        args: list[str | float] = [
            repr(self._half_life),
            repr(RESCALE_AFTER_HALF_LIVES * self._half_life),
            self._hits_key(""),
        ]
        volume: dict[str, float] = defaultdict(float)
        for segment, item, weight, ts in hits:
            args += [str(index[segment]), item, repr(float(weight)), repr(float(ts))]
            if segment == GLOBAL_SEGMENT:
                volume[item] += weight
        pipe.sadd(self._segments_key, *segments)
        keys = [self._landmark_key, self._segments_key, *map(self._hits_key, segments)]
        # EVAL, not EVALSHA: inside MULTI a missing script would fail alone, not the batch.
        pipe.eval(_HITS_LUA, len(keys), *keys, *args)
        for item, weight in volume.items():
            pipe.zincrby(self._volume_key, weight, item)

    def _queue_co_occurrences(
        self, pipe: Pipeline, pairs: list[tuple[str, str, float]]
    ) -> list[tuple[str, str, float]]:
        """Queues one ZINCRBY per (row, other) and then the trim; returns what was added."""
        counts: dict[tuple[str, str], float] = defaultdict(float)
        for a, b, weight in pairs:
            counts[(a, b)] += weight
            counts[(b, a)] += weight
        for (a, b), weight in counts.items():
            pipe.zincrby(self._co_key(a), weight, b)
        rows = sorted({self._co_key(a) for a, _ in counts})
        pipe.eval(_TRIM_LUA, len(rows), *rows, self._co_cap)
        return [(a, b, weight) for (a, b), weight in counts.items()]

    def _applied_key(self, bucket: int) -> str:
        return f"{self._prefix}applied:{bucket}"

    def _session_key(self, subject: str) -> str:
        return f"{self._prefix}session:{subject}"

    def _outcome_key(self, session: str) -> str:
        return f"{self._prefix}outcome:{session}"

    def _item_key(self, item_id: str) -> str:
        return f"{self._prefix}item:{item_id}"

    def _hits_key(self, segment: str) -> str:
        return f"{self._prefix}hits:{segment}"

    def _co_key(self, item_id: str) -> str:
        return f"{self._prefix}co:{item_id}"


def encode_item(item: Item) -> str:
    """Compact JSON of an item; fields at their defaults are left out."""
    data: dict[str, Any] = {"item_id": item.item_id}
    for name in ("title", "brand", "price", "stock", "created_at"):
        value = getattr(item, name)
        if value not in (None, ""):
            data[name] = value
    if item.category:
        data["category"] = list(item.category)
    if item.attributes:
        data["attributes"] = item.attributes
    return _compact(data)


def decode_item(blob: bytes | str) -> Item:
    data = json.loads(blob)
    return Item(
        item_id=data["item_id"],
        title=data.get("title", ""),
        category=tuple(data.get("category", ())),
        brand=data.get("brand"),
        price=data.get("price"),
        stock=data.get("stock"),
        attributes=data.get("attributes", {}),
        created_at=data.get("created_at"),
    )


def _cosines(reply: list[Any], n: int) -> list[tuple[str, float]]:
    """The neighbours script's reply (row pairs, volumes) as the top n by cosine."""
    row, volumes = reply
    volume = _score(volumes[0])
    scored = [
        (row[i].decode(), cosine(float(row[i + 1]), volume, _score(v)))
        for i, v in zip(range(0, len(row), 2), volumes[1:], strict=True)
    ]
    scored.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
    return scored[:n]


def _mget(client: redis.Redis, keys: list[str]) -> list[bytes | None]:
    return cast(list[bytes | None], client.mget(keys))


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _score(value: bytes | None) -> float:
    return float(value) if value is not None else 0.0
