"""Redis processor state: sessions, catalog, decayed popularity and co-occurrence counters.

Keys and encodings are documented in docs/redis-keys.md. `apply` is one MULTI/EXEC
transaction, so a micro-batch's effects and its event ids land together or not at all:
that is what makes an at-least-once redelivery change nothing. `apply_all` sends a
micro-batch's transactions in one round trip.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from shopper.adapters.memo import StaleMemo
from shopper.adapters.redis_state_lua import (
    CO_OCCURRENCE_LUA,
    HITS_LUA,
    NEIGHBOURS_LUA,
    UNLISTED_LUA,
)
from shopper.adapters.redis_wire import Command, run_commands, run_transactions
from shopper.domain.attribution import OutcomeDelta
from shopper.domain.experiment_stats import SessionOutcome
from shopper.domain.item import Item
from shopper.domain.ranking import cosine
from shopper.domain.segment import GLOBAL_SEGMENT
from shopper.domain.session import SessionState
from shopper.ports.clock import Clock
from shopper.ports.processor_state import UNLISTED_CAP, StateChanges

# Forward-decayed sums grow as 2**(age / half-life); rescale long before doubles overflow
# (2**1024), exactly as the in-memory state does.
RESCALE_AFTER_HALF_LIVES = 500.0

_OUTCOME_CHUNK = 1000  # sessions read per pipeline for the experiment report
# Keys or members per read command: a command runs whole, and a page read sharing the
# Redis waits behind it; a few hundred take a fraction of a millisecond.
_CHUNK = 500


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
        unlisted_cap: int = UNLISTED_CAP,
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
        self._unlisted_key = f"{prefix}unlisted"  # item -> last seen (StateChanges.unlisted)
        self._unlisted_seq_key = f"{prefix}unlisted_seq"
        self._unlisted_cap = unlisted_cap
        self._outcomes_key = f"{prefix}outcomes"  # session -> last change, for the report
        self._report_key = f"{prefix}experiment_report"  # published by a processor process
        self._neighbours = client.register_script(NEIGHBOURS_LUA)
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
            s: SessionState.from_dict(orjson.loads(b)) if b is not None else SessionState(subject=s)
            for s, b in zip(wanted, blobs, strict=True)
        }

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return {}
        blobs = _mget(self._client, [self._item_key(i) for i in wanted])
        return {i: decode_item(b) for i, b in zip(wanted, blobs, strict=True) if b is not None}

    def apply(self, changes: StateChanges) -> None:
        self.apply_all([changes])

    def apply_all(self, transactions: Sequence[StateChanges]) -> None:
        """Each as one MULTI/EXEC, all in one round trip (`run_transactions`)."""
        # Everything is encoded before anything is sent: a bad value fails the whole
        # batch here, never half of it inside Redis.
        queued = [t for changes in transactions if (t := self._transaction(changes)).commands]
        replies = run_transactions(self._client, [t.commands for t in queued])
        for sent, reply in zip(queued, replies, strict=True):
            if sent.pairs:
                self._forget_changed_rows(sent.pairs, reply[sent.totals_at])
            if sent.unlisted:  # the rows its forgetting changed (the last command's reply)
                for item in reply[-1]:
                    self._neighbour_memo.drop(item.decode())

    def _forget_changed_rows(self, pairs: list[tuple[str, str, float]], totals: list[Any]) -> None:
        for (a, _, weight), total in zip(pairs, totals, strict=True):
            if float(total) == weight:
                # A new neighbour makes a remembered row wrong, not just a little stale: a
                # list written from it would miss the pair until the shopper acts again.
                self._neighbour_memo.drop(a)

    def _transaction(self, changes: StateChanges) -> _Transaction:
        commands: list[Command] = []
        if changes.event_ids:
            commands += self._applied_commands(changes.event_ids)
        for subject, session in changes.sessions.items():
            blob = orjson.dumps(session.to_dict())
            commands.append(("SET", self._session_key(subject), blob, "PX", self._session_ms))
        for item_id, item in changes.items.items():
            commands.append(("SET", self._item_key(item_id), encode_item(item)))
        if changes.items:  # listed: counted for good
            commands.append(("ZREM", self._unlisted_key, *changes.items))
        if changes.hits:
            commands += self._hit_commands(changes.hits)
        if changes.outcomes:
            commands += self._outcome_commands(changes.outcomes)
        pairs = _pair_counts(changes.co_occurrences)
        totals_at = len(commands)  # where the reply has the pairs' new totals
        if pairs:
            commands.append(self._co_occurrence_command(pairs))
        if changes.unlisted:  # after every count of the transaction, last
            commands.append(self._unlisted_command(list(changes.unlisted)))
        return _Transaction(commands, pairs, totals_at, bool(changes.unlisted))

    def _unlisted_command(self, items: list[str]) -> Command:
        keys = [self._unlisted_key, self._unlisted_seq_key, self._volume_key, self._segments_key]
        prefixes = [self._hits_key(""), self._co_key(""), self._item_key("")]
        return ("EVAL", UNLISTED_LUA, len(keys), *keys, self._unlisted_cap, *prefixes, *items)

    def _co_occurrence_command(self, pairs: list[tuple[str, str, float]]) -> Command:
        rows = list(dict.fromkeys(self._co_key(a) for a, _, _ in pairs))
        index = {row: i for i, row in enumerate(rows, 1)}  # Lua KEYS are 1-based
        args = [field for a, b, weight in pairs for field in (index[self._co_key(a)], b, weight)]
        return ("EVAL", CO_OCCURRENCE_LUA, len(rows), *rows, self._co_cap, *args)

    def _applied_commands(self, event_ids: list[str]) -> list[Command]:
        now = self._clock.now()
        bucket = math.floor(now / self._dedup_s)
        key = self._applied_key(bucket)
        # Kept until the end of the next bucket: at least one full dedup TTL. Relative,
        # so a processor clock that differs from the server's cannot expire it early.
        ttl_ms = math.ceil(((bucket + 2) * self._dedup_s - now) * 1000)
        return [("SADD", key, *event_ids), ("PEXPIRE", key, ttl_ms)]

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

    def publish_report(self, report: dict[str, Any]) -> None:
        # Kept as long as the sessions it counts; replaced by the next one.
        self._client.set(self._report_key, orjson.dumps(report), px=self._session_ms)

    def published_report(self) -> dict[str, Any] | None:
        blob = cast(bytes | None, self._client.get(self._report_key))
        return cast(dict[str, Any], orjson.loads(blob)) if blob is not None else None

    def _outcome_commands(self, outcomes: dict[str, OutcomeDelta]) -> list[Command]:
        """Each session's delta onto its hash (counters add up; the first variant
        stays), the session into the report's index; both kept as long as sessions."""
        now = self._clock.now()
        commands: list[Command] = []
        for session, d in outcomes.items():
            key = self._outcome_key(session)
            if d.variant:
                commands.append(("HSETNX", key, "v", d.variant))
            if d.impressions:
                commands.append(("HINCRBY", key, "i", d.impressions))
            if d.clicks:
                commands.append(("HINCRBY", key, "c", d.clicks))
            if d.carted:
                commands.append(("HSET", key, "ca", "1"))
            if d.converted:
                commands.append(("HSET", key, "co", "1"))
            if d.revenue:
                commands.append(("HINCRBYFLOAT", key, "r", d.revenue))
            commands.append(("PEXPIRE", key, self._session_ms))
        indexed = [field for session in outcomes for field in (now, session)]
        commands.append(("ZADD", self._outcomes_key, *indexed))
        since = now - self._session_ms / 1000
        commands.append(("ZREMRANGEBYSCORE", self._outcomes_key, "-inf", since))
        return commands

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
        """Every row, then the volumes of all their items at once: two round trips, but a
        third of the Redis time of the neighbours script per row (time the page reads
        sharing that Redis wait behind), and each item's volume read once."""
        reads: list[Command] = [("ZRANGE", self._co_key(i), 0, -1, "WITHSCORES") for i in item_ids]
        rows: list[list[bytes]] = run_commands(self._client, reads)
        raw_ids = [i.encode() for i in item_ids]
        members = list(dict.fromkeys([*raw_ids, *(m for row in rows for m in row[::2])]))
        chunks = range(0, len(members), _CHUNK)
        lookups: list[Command] = [
            ("ZMSCORE", self._volume_key, *members[start : start + _CHUNK]) for start in chunks
        ]
        scores = [v for reply in run_commands(self._client, lookups) for v in reply]
        volume = {m: _score(v) for m, v in zip(members, scores, strict=True)}
        return {
            i: _top_cosines(row, volume[raw], map(volume.__getitem__, row[::2]), n)
            for i, raw, row in zip(item_ids, raw_ids, rows, strict=True)
        }

    def _read_popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        # Equal scores come back in reverse lexicographic order, as the in-memory state
        # breaks ties (largest (score, id) first).
        rows = cast(
            list[tuple[bytes, float]],
            self._client.zrevrange(self._hits_key(segment), 0, n - 1, withscores=True),
        )
        return [(member.decode(), float(score)) for member, score in rows]

    def _read_neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        row, volumes = self._neighbours(
            keys=[self._co_key(item_id), self._volume_key], args=[item_id]
        )
        return _top_cosines(row, _score(volumes[0]), map(_score, volumes[1:]), n)

    def _hit_commands(self, hits: list[tuple[str, str, float, float]]) -> list[Command]:
        segments = list(dict.fromkeys(segment for segment, _, _, _ in hits))
        index = {segment: str(i) for i, segment in enumerate(segments, 4)}  # KEYS[4], ...
        args: list[str | float] = [
            repr(self._half_life),
            repr(RESCALE_AFTER_HALF_LIVES * self._half_life),
            self._hits_key(""),
            index.get(GLOBAL_SEGMENT, "0"),
        ]
        for segment, item, weight, ts in hits:
            args += [index[segment], item, weight, ts]  # numbers go as their repr
        keys = [
            self._landmark_key,
            self._segments_key,
            self._volume_key,
            *map(self._hits_key, segments),
        ]
        # EVAL, not EVALSHA: inside MULTI a missing script would fail alone, not the batch.
        return [
            ("SADD", self._segments_key, *segments),
            ("EVAL", HITS_LUA, len(keys), *keys, *args),
        ]

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


@dataclass(frozen=True, slots=True)
class _Transaction:
    commands: list[Command]
    pairs: list[tuple[str, str, float]]  # the co-occurrence increments, in the order sent
    totals_at: int  # the index of their command (its reply: their new totals)
    unlisted: bool  # the last command notes items the catalog does not list


def _pair_counts(pairs: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Each pair counted both ways, summed: one increment per (row, other)."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for a, b, weight in pairs:
        counts[(a, b)] += weight
        counts[(b, a)] += weight
    return [(a, b, weight) for (a, b), weight in counts.items()]


def _top_cosines(
    row: list[bytes], volume: float, volumes: Iterable[float], n: int
) -> list[tuple[str, float]]:
    """A co-occurrence row as read (member, count, ...) and its members' volumes: the top
    n by cosine, ties to the larger id. Sorted as (score, raw id) tuples, with no key
    function (UTF-8 bytes sort as their text does); only the top n ids are decoded."""
    scored = [
        (cosine(float(count), volume, v), member)
        for member, count, v in zip(row[::2], row[1::2], volumes, strict=True)
    ]
    scored.sort(reverse=True)
    return [(member.decode(), score) for score, member in scored[:n]]


def _mget(client: redis.Redis, keys: list[str]) -> list[bytes | None]:
    """MGET in chunks, all in one round trip: one MGET of a whole micro-batch's keys
    would hold up the page reads sharing that Redis for milliseconds."""
    chunks = range(0, len(keys), _CHUNK)
    replies = run_commands(client, [("MGET", *keys[start : start + _CHUNK]) for start in chunks])
    return [blob for reply in replies for blob in reply]


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _score(value: bytes | None) -> float:
    return float(value) if value is not None else 0.0
