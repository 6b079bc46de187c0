"""The feature engine's state rebuilt from the event archive, when a process starts.

The online rows a process pushes are computed from its engine's state; an engine that
started empty after a restart, a replaced processor or a redeployment onto new topics
would compute them from the events it has seen since, while training (the backfill)
computes them from the whole archive. So before a pipeline takes a live event, its
engine folds the archive in, as the backfill does: in time order, each event once (the
first in time order, `Event.dedup_key`), a UTC day at a time. Events older than a view's
horizon are folded into the entity's carry summary and dropped (see `FeatureEngine`), so
memory is bounded by the longest window; the lifetime features (`interaction_count`, an
item's first event and latest stated price, stock and category) summarise every older
event, so the whole archive is read once: `benchmarks/feature_rebuild.py` measures how
long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shopper.domain.event import Event
from shopper.domain.features.engine import FeatureEngine
from shopper.domain.features.timeline import event_key
from shopper.ports.event_archive import EventArchive

log = logging.getLogger(__name__)

RebuildProgress = Callable[[int, int], None]  # (events just read, events in all)


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: `complete` is False when the archive could not be read whole
    (the engine then lacks history: rows it computes are tagged, see `ServedRow`)."""

    events: int  # archived events folded in (each event once)
    read: int  # archived events read (duplicates included)
    seconds: float
    complete: bool
    error: str | None = None


def rebuild_engine(
    engine: FeatureEngine, archive: EventArchive, progress: RebuildProgress | None = None
) -> RebuildResult:
    """Fold every archived event into `engine` (which must be empty), as the backfill
    orders and deduplicates them, one UTC day in memory at a time."""
    started = time.perf_counter()
    seen: set[str] = set()
    folded = read = 0
    try:
        total = archive.size()
        for day in archive.read_days():
            batch = _first_copies(day, seen)
            engine.apply(batch)
            folded += len(batch)
            read += len(day)
            if progress is not None:
                progress(len(day), total)
    except Exception as exc:
        log.exception("could not read the event archive whole; features lack its history")
        seconds = time.perf_counter() - started
        return RebuildResult(folded, read, seconds, complete=False, error=repr(exc))
    seconds = time.perf_counter() - started
    log.info("feature state rebuilt from %d archived events in %.1f s", folded, seconds)
    return RebuildResult(folded, read, seconds, complete=True)


def _first_copies(day: list[Event], seen: set[str]) -> list[Event]:
    """A day's events in time order, each event once and only if no earlier day had it:
    days come in time order, so this is `unique_in_order` over the whole archive."""
    out = []
    for event in sorted(day, key=event_key):
        key = event.dedup_key
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out
