"""The backfill: the feature functions over the event archive, into the offline store.

It runs the very engine the stream processor runs, over the archived events in time
order, and keeps a row each time an entity's events change: the offline history holds
every value the online store can have held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby

from shopper.domain.event import Event
from shopper.domain.features.engine import FeatureEngine, unique_in_order
from shopper.domain.features.spec import VIEWS, FeatureRow
from shopper.ports.event_archive import EventArchive
from shopper.ports.feature_store import FeatureStore

BackfillProgress = Callable[[int, int], None]  # (events just done, events in all)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    events: int
    rows: dict[str, int]  # view -> rows written


def offline_rows(
    events: Iterable[Event], progress: BackfillProgress | None = None
) -> dict[str, list[FeatureRow]]:
    """Every view's rows over `events` (any order; repeated ids count once): one row per
    entity and distinct timestamp of its events, as of that timestamp."""
    engine = FeatureEngine()
    rows: dict[str, list[FeatureRow]] = {name: [] for name in VIEWS}
    ordered = unique_in_order(events)
    for _, group in groupby(ordered, key=lambda e: e.ts):
        batch = list(group)
        for row in engine.rows(engine.apply(batch)):
            rows[row.view].append(row)
        if progress is not None:
            progress(len(batch), len(ordered))
    return rows


def backfill(
    archive: EventArchive, store: FeatureStore, progress: BackfillProgress | None = None
) -> BackfillResult:
    """Recompute the whole offline store from the archive (idempotent)."""
    archive.flush()
    return backfill_events(list(archive.read()), store, progress)


def backfill_events(
    events: list[Event], store: FeatureStore, progress: BackfillProgress | None = None
) -> BackfillResult:
    """Make the offline store the rows of `events` (the archive's, or a data set's)."""
    rows = offline_rows(events, progress)
    for view, view_rows in rows.items():
        store.replace_offline(view, view_rows)
    return BackfillResult(len(events), {view: len(r) for view, r in rows.items()})
