"""Time-to-live for the in-memory adapters: entries expire as their Redis keys would.

Every store here has one TTL for all its entries, counted from an entry's last write, so
the order entries expire in is the order they were last written. An `ExpiringMap` keeps
that order in an `OrderedDict` (a rewrite moves its key to the end): a sweep pops expired
entries from the front and stops at the first live one, so its cost is what it frees, and
a read is one `dict.get` and a comparison. (cachetools' `TTLCache` keeps the same order,
but as a linked list of Python objects beside two more dicts: about three times the
memory per entry, and a read through Python code rather than `dict.get`.)

Reads check an entry's age themselves, so what a read sees never depends on when the last
sweep ran; sweeps only give the memory back. Each adapter sweeps after its writes and a
`Sweeper` thread sweeps every registered map once a second, for a process that has
stopped writing.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from shopper.allocator import release_free_memory

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

SWEEP_EVERY_S = 1.0
# Entries freed by the sweeps since glibc's free memory was last given back to the system.
TRIM_AFTER = 10_000
# Entries freed per hold of the owner's lock: a page read waits behind one chunk at most.
SWEEP_CHUNK = 2_000


class ExpiringMap(Generic[K, V]):
    """key -> (value, written_at); an entry lives `ttl_s` from its last write.

    Not thread-safe: the owning adapter holds its own lock around every call (`sweep`
    takes that lock itself, a chunk at a time)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def put(self, key: K, value: V, now: float) -> None:
        entries = self.entries
        entries[key] = (value, now)
        entries.move_to_end(key)

    def get(self, key: K, now: float) -> V | None:
        entry = self.entries.get(key)
        if entry is None or now - entry[1] > self.ttl_s:
            return None
        return entry[0]

    def live(self, now: float) -> Iterator[tuple[K, V]]:
        since = now - self.ttl_s
        return ((k, v) for k, (v, t) in self.entries.items() if t >= since)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def expire(self, now: float, limit: int = SWEEP_CHUNK) -> int:
        """Drop up to `limit` expired entries (the oldest first); returns how many."""
        return _expire_oldest(self.entries, now - self.ttl_s, limit, _written_at)


def sweep(lock: threading.Lock, now: float, *maps: ExpiringMap[Any, Any] | ExpiringSet[Any]) -> int:
    """Drop every expired entry of `maps`, taking `lock` one chunk at a time."""
    dropped = 0
    for expiring in maps:
        while True:
            with lock:
                freed = expiring.expire(now)
            dropped += freed
            if freed < SWEEP_CHUNK:
                break
    return dropped


class Sweeper:
    """One daemon thread per process that calls every registered sweep once a second.

    Adapters are held weakly: one that is no longer used is collected as before, and its
    sweep is forgotten."""

    _instance: Sweeper | None = None
    _instance_lock = threading.Lock()

    def __init__(self, every_s: float = SWEEP_EVERY_S) -> None:
        self._every_s = every_s
        self._sweeps: list[weakref.WeakMethod[Callable[[], object]]] = []
        self._freed = 0  # entries freed since the last trim
        self._expiring = False  # whether the last round freed any
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="shopper-expiry", daemon=True)
        self._thread.start()

    @classmethod
    def register(cls, sweep_now: Callable[[], object]) -> None:
        """Call the bound method `sweep_now` every second while its object lives."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = Sweeper()
            instance = cls._instance
        with instance._lock:
            instance._sweeps.append(weakref.WeakMethod(sweep_now))

    @classmethod
    def _restart_after_fork(cls) -> None:
        """A forked child has no sweeper thread: give it one over the same sweeps."""
        instance = cls._instance
        if instance is not None:
            instance._lock = threading.Lock()
            instance._thread = threading.Thread(
                target=instance._run, name="shopper-expiry", daemon=True
            )
            instance._thread.start()

    def _run(self) -> None:
        stopped = threading.Event()
        while not stopped.wait(self._every_s):
            with self._lock:
                self._sweeps = [ref for ref in self._sweeps if ref() is not None]
                refs = list(self._sweeps)
            freed_now = 0
            for ref in refs:
                method = ref()
                if method is None:
                    continue
                try:
                    freed = method()
                except Exception:  # a sweep that failed once must not stop the others
                    log.exception("sweeping expired in-memory entries failed")
                    freed = 0
                del method
                freed_now += freed if isinstance(freed, int) else 0
            self.after_round(freed_now)

    def after_round(self, freed_now: int) -> None:
        """Trim after many entries went, and once the expiring stops (the end of a wave),
        then collecting in full too: a wave's end is rare, and worth its few ms."""
        self._freed += freed_now
        wave_ended = self._expiring and not freed_now
        self._expiring = freed_now > 0
        if self._freed >= TRIM_AFTER or wave_ended:
            self._freed = 0
            trim_memory(collect=wave_ended)


class ExpiringSet(Generic[K]):
    """Keys remembered `ttl_s` from their last add (applied event ids): an `ExpiringMap`
    without values, a float per key rather than a tuple."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.entries: OrderedDict[K, float] = OrderedDict()

    def add(self, key: K, now: float) -> None:
        self.entries[key] = now
        self.entries.move_to_end(key)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def drop_oldest(self) -> None:
        self.entries.popitem(last=False)

    def expire(self, now: float, limit: int = SWEEP_CHUNK) -> int:
        """As `ExpiringMap.expire`."""
        return _expire_oldest(self.entries, now - self.ttl_s, limit, float)


os.register_at_fork(after_in_child=Sweeper._restart_after_fork)


def trim_memory(collect: bool = False) -> None:
    """Give the allocator's free memory back to the system (`release_free_memory`): after
    a sweep, the pages of expired entries would otherwise stay in the process's RSS, free
    but held, until the allocator's own thresholds release them.

    With `collect`, a full garbage collection first (a few ms for a process's state). It
    frees cycles left by the expired entries, and it empties CPython's free lists (tuples,
    floats, dicts, lists kept for reuse), whose blocks, left from a burst, are spread over
    the small-object arenas of that burst and keep them from being returned: after 50,000
    shoppers expire, one collection gave back 55 arenas of 1 MiB. It also empties CPython's
    cache of type attribute lookups: C code that calls a method by a C string name (the
    `datetime` module asks every zone for its offset so) makes a new name string for each
    call, and the cache, which files names by address, keeps up to 4,096 of them alive,
    made at any moment of the burst and so spread over its arenas."""
    if collect:
        gc.collect()
        sys._clear_type_cache()
    release_free_memory()


def _written_at(entry: tuple[Any, float]) -> float:
    return entry[1]


def _expire_oldest(
    entries: OrderedDict[Any, Any], since: float, limit: int, written_at: Callable[[Any], float]
) -> int:
    """Pop entries written before `since` from the front of `entries` (last-write order),
    `limit` at most; stops at the first live one. Returns how many went."""
    dropped = 0
    while entries and dropped < limit:
        key = next(iter(entries))
        if written_at(entries[key]) >= since:
            break
        del entries[key]
        dropped += 1
    if dropped and not entries:
        entries.clear()  # a dict never shrinks on deletes: this frees its table
    return dropped
