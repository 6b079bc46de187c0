"""In-memory processor state: sessions, catalog, decayed popularity, co-occurrence."""

from __future__ import annotations

import heapq
import marshal
import threading
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from shopper.adapters.memo import StaleMemo
from shopper.adapters.memory_counters import Counters
from shopper.adapters.memory_expiry import ExpiringMap, ExpiringSet, Sweeper, sweep
from shopper.adapters.system_clock import SystemClock
from shopper.domain.attribution import OutcomeDelta
from shopper.domain.experiment_stats import SessionOutcome
from shopper.domain.item import Item
from shopper.domain.ranking import cosine, forward_weight
from shopper.domain.session import SessionState
from shopper.ports.clock import Clock
from shopper.ports.processor_state import UNLISTED_CAP, StateChanges

# Forward-decayed sums grow as 2**(age / half-life); rescale long before floats overflow.
_RESCALE_AFTER_HALF_LIVES = 500.0


class InMemoryProcessorState:
    def __init__(
        self,
        half_life_s: float,
        dedup_capacity: int = 1_000_000,
        staleness_s: float = 1.0,
        *,
        clock: Clock | None = None,
        session_ttl_s: float = 7 * 86400.0,
        dedup_ttl_s: float = 3600.0,
        unlisted_cap: int = UNLISTED_CAP,
    ) -> None:
        """Sessions and their experiment outcomes live `session_ttl_s` from their last
        change, applied event ids `dedup_ttl_s` (at most `dedup_capacity` of them), as
        their Redis keys do; the catalog, popularity and co-occurrence are bounded by the
        catalog and the `unlisted_cap` items it does not list seen last, as in Redis."""
        self._clock = clock or SystemClock()
        self._half_life = half_life_s
        self._neighbour_memo = StaleMemo(staleness_s)
        self._report: dict[str, Any] | None = None  # the experiment report published
        self._landmark: float | None = None
        self._applied: ExpiringSet[str] = ExpiringSet(dedup_ttl_s)
        self._dedup_capacity = dedup_capacity
        # Sessions are kept encoded (marshal): a fifth of the memory (a shopper with ten
        # interactions: ~430 bytes, against ~2 KB as objects), and one object the garbage
        # collector never walks rather than ~15. A read is a fresh copy either way.
        self._sessions: ExpiringMap[str, bytes] = ExpiringMap(session_ttl_s)
        self._items: dict[str, Item] = {}
        # Counted sums in `Counters`: a hit writes in place, so no burst leaves objects.
        self._popular: dict[str, Counters] = {}
        self._co: dict[str, Counters] = {}
        self._volume = Counters()
        self._unlisted: dict[str, None] = {}  # least recently seen first
        self._unlisted_cap = unlisted_cap
        self._outcomes: ExpiringMap[str, OutcomeDelta] = ExpiringMap(session_ttl_s)
        self._lock = threading.Lock()
        Sweeper.register(self.sweep)

    def sweep(self) -> int:
        """Drop expired sessions, outcomes and event ids (the `Sweeper` calls this every
        second; each `apply` sweeps too); returns how many."""
        self._neighbour_memo.expire()
        return sweep(self._lock, self._clock.now(), self._sessions, self._outcomes, self._applied)

    def applied(self, event_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {e for e in event_ids if e in self._applied}

    def sessions(self, subjects: Iterable[str]) -> dict[str, SessionState]:
        now = self._clock.now()
        with self._lock:
            blobs = {s: self._sessions.get(s, now) for s in subjects}
        return {
            s: SessionState.from_dict(marshal.loads(b)) if b is not None else SessionState(s)
            for s, b in blobs.items()
        }

    def outcomes(self) -> list[SessionOutcome]:
        now = self._clock.now()
        with self._lock:
            return [o for _, d in self._outcomes.live(now) if (o := d.outcome()) is not None]

    def publish_report(self, report: dict[str, Any]) -> None:
        self._report = report

    def published_report(self) -> dict[str, Any] | None:
        return self._report

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        with self._lock:
            return {i: self._items[i] for i in item_ids if i in self._items}

    def apply_all(self, transactions: Sequence[StateChanges]) -> None:
        for changes in transactions:
            self.apply(changes)

    def apply(self, changes: StateChanges) -> None:
        sessions = {s: marshal.dumps(state.to_dict()) for s, state in changes.sessions.items()}
        now = self._clock.now()
        with self._lock:
            for subject, blob in sessions.items():
                self._sessions.put(subject, blob, now)
            self._items.update(changes.items)
            for session, delta in changes.outcomes.items():
                # An expired session's counters start again, as its Redis hash would.
                kept = self._outcomes.get(session, now) or OutcomeDelta()
                kept.add(delta)
                self._outcomes.put(session, kept, now)
            for segment, item, weight, ts in changes.hits:
                self._hit(segment, item, weight, ts)
            self._note_unlisted(changes)
            for a, b, weight in changes.co_occurrences:
                if _counters(self._co, a).add(b, weight):
                    # A new neighbour makes a cached row wrong, not just a little stale: a
                    # list written from it would miss the pair until the shopper acts again.
                    self._neighbour_memo.drop(a)
                    self._neighbour_memo.drop(b)
                _counters(self._co, b).add(a, weight)
            while len(self._unlisted) > self._unlisted_cap:
                self._forget(next(iter(self._unlisted)))
            # Ids last: if anything above raised, a redelivery applies the batch again.
            for event_id in changes.event_ids:
                self._applied.add(event_id, now)
            while len(self._applied) > self._dedup_capacity:
                self._applied.drop_oldest()
            for expiring in (self._sessions, self._outcomes, self._applied):
                expiring.expire(now)

    def _note_unlisted(self, changes: StateChanges) -> None:
        unlisted = self._unlisted
        for item in changes.items:
            unlisted.pop(item, None)
        for item in changes.unlisted:
            if item not in self._items:
                unlisted.pop(item, None)  # to the end: seen last
                unlisted[item] = None

    def _forget(self, item: str) -> None:
        """An item the catalog does not list, seen least recently: its counts go."""
        del self._unlisted[item]
        for table in self._popular.values():
            table.pop(item)
        self._volume.pop(item)
        for other in self._co.pop(item, ()):
            row = self._co.get(other)
            if row is not None and row.pop(item) is not None:
                self._neighbour_memo.drop(other)
        self._neighbour_memo.drop(item)

    def popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        """Top items of a segment (the processor reads it once per micro-batch)."""
        with self._lock:
            table = self._popular.get(segment)
            if table is None:
                return []
            return heapq.nlargest(n, table.items(), key=lambda kv: (kv[1], kv[0]))

    def neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        """Memoised per item for up to `staleness_s` (the processor's hottest call); a new
        pair drops the memo at once."""
        return self._neighbour_memo.get(item_id, n, self._locked_neighbours)

    def neighbours_many(
        self, item_ids: Collection[str], n: int
    ) -> dict[str, list[tuple[str, float]]]:
        return self._neighbour_memo.get_many(item_ids, n, self._locked_neighbours_many)

    def _locked_neighbours_many(
        self, item_ids: list[str], n: int
    ) -> dict[str, list[tuple[str, float]]]:
        with self._lock:
            return {i: self._compute_neighbours(i, n) for i in item_ids}

    def _locked_neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        with self._lock:
            return self._compute_neighbours(item_id, n)

    def _compute_neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        row = self._co.get(item_id)
        if row is None:
            return []
        volume = self._volume.get(item_id)
        vol = self._volume.get
        # (score, id) tuples: the largest first, ties to the larger id, with no key function
        scored = [(cosine(c, volume, vol(other)), other) for other, c in row.items()]
        return [(other, score) for score, other in heapq.nlargest(n, scored)]

    def _hit(self, segment: str, item: str, weight: float, ts: float) -> None:
        if self._landmark is None:
            self._landmark = ts
        if ts - self._landmark > _RESCALE_AFTER_HALF_LIVES * self._half_life:
            self._rescale(ts)
        weighted = forward_weight(weight, ts, self._landmark, self._half_life)
        _counters(self._popular, segment).add(item, weighted)
        if segment == "global":
            self._volume.add(item, weight)

    def _rescale(self, new_landmark: float) -> None:
        assert self._landmark is not None
        factor = forward_weight(1.0, self._landmark, new_landmark, self._half_life)
        for table in self._popular.values():
            table.scale(factor)
        self._landmark = new_landmark


def _counters(tables: dict[str, Counters], key: str) -> Counters:
    """`tables[key]`, made empty on first use."""
    table = tables.get(key)
    if table is None:
        table = tables[key] = Counters()
    return table
