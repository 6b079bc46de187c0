"""The skew check: do the rows the online path served or holds equal what training sees?

Each online row says the value of its view for one entity as of a time; the offline
store's point-in-time answer for that entity and time must be the same, feature by
feature. Floats compare exactly: both sides run the same functions on the same events.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shopper.domain.event import Event
from shopper.domain.features.engine import ITEM, USER, item_of, unique_in_order, user_of
from shopper.domain.features.pair import PAIR_FEATURES, SHOPPER_ITEM, pair_features
from shopper.domain.features.spec import (
    PRODUCT_STATS,
    SESSION_CONTEXT,
    USER_PROFILE,
    VIEWS,
    FeatureRow,
    FeatureValue,
)
from shopper.domain.features.window import ITEM_HORIZON, USER_HORIZON
from shopper.ports.feature_store import BEFORE_REBUILD, FeatureStore, ServedRow

EXAMPLES = 10  # mismatches quoted in a report
LATE_EVENTS = "late_events"


@dataclass(frozen=True, slots=True)
class Mismatch:
    view: str
    entity_id: str
    as_of: float
    feature: str
    online: FeatureValue
    offline: FeatureValue


@dataclass(slots=True)
class SkewReport:
    checked: int = 0
    mismatches: int = 0  # rows with a differing feature, or with no offline row at all
    # Of those, served rows computed from fewer events than training sees for their time
    # (late data, not a definition's fault), by reason in `late_reasons`: events that
    # arrived after the row was served (LATE_EVENTS), or an engine whose state lacked the
    # archive's history when it computed the row (BEFORE_REBUILD).
    late: int = 0
    late_reasons: dict[str, int] = field(default_factory=dict)
    missing_offline: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)  # "view:feature" -> rows
    sources: dict[str, int] = field(default_factory=dict)  # "served" / "online" -> rows
    examples: list[Mismatch] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        """Mismatches that late data does not explain: a definition differs (real skew)."""
        return self.mismatches - self.late

    def count_late(self, reason: str) -> None:
        self.late += 1
        self.late_reasons[reason] = self.late_reasons.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unexplained"] = self.unexplained
        out["examples"] = [
            {**asdict(m), "online": _jsonable(m.online), "offline": _jsonable(m.offline)}
            for m in self.examples
        ]
        return out


class EventCounts:
    """How many events of each entity training sees inside a view's horizon up to a
    time: what a served row should have been computed from."""

    def __init__(self, events: Iterable[Event]) -> None:
        times: dict[tuple[str, str], list[float]] = {}
        for event in unique_in_order(events):
            if (subject := user_of(event)) is not None:
                times.setdefault((USER, subject), []).append(event.ts)
            if (item := item_of(event)) is not None:
                times.setdefault((ITEM, item), []).append(event.ts)
        self._times = times  # sorted: unique_in_order sorts by time

    def within_horizon(self, view: str, entity_id: str, as_of: float) -> int:
        kind, horizon = (ITEM, ITEM_HORIZON) if view == PRODUCT_STATS.name else (USER, USER_HORIZON)
        times = self._times.get((kind, entity_id), [])
        return bisect.bisect_right(times, as_of) - bisect.bisect_right(
            times, as_of - horizon.seconds
        )


def check_skew(
    store: FeatureStore,
    served: Sequence[ServedRow],
    online: Sequence[FeatureRow],
    counts: EventCounts | None = None,
) -> SkewReport:
    """Compare served rows and current online rows with the offline store's
    point-in-time rows for the same entity and time. With `counts` (training's events),
    a served row that was computed from fewer events than training sees for its time is
    `late`: events arrived after it was served, so its difference says nothing of the
    definitions."""
    vectors = [s.row for s in served if s.row.view == SHOPPER_ITEM.name]
    served = [s for s in served if s.row.view != SHOPPER_ITEM.name]
    report = SkewReport(
        sources={"served": len(served), "online": len(online), "vectors": len(vectors)},
        late_reasons={LATE_EVENTS: 0, BEFORE_REBUILD: 0},
    )
    tagged = [*served, *(ServedRow(row) for row in online)]
    for view in sorted({s.row.view for s in tagged}):
        view_rows = [s for s in tagged if s.row.view == view]
        report.by_feature.update({f"{view}:{name}": 0 for name in VIEWS[view].feature_names})
        offline = store.historical(view, [(s.row.entity_id, s.row.as_of) for s in view_rows])
        for s, offline_row in zip(view_rows, offline, strict=True):
            if _compare(report, s.row, offline_row):
                continue
            if s.incomplete is not None:
                # Computed before the engine's state held the archive's history.
                report.count_late(s.incomplete.partition(":")[0])
            elif (
                s.events_seen is not None
                and counts is not None
                and s.events_seen < counts.within_horizon(view, s.row.entity_id, s.row.as_of)
            ):
                report.count_late(LATE_EVENTS)
    _check_vectors(report, store, vectors, counts)
    return report


def _check_vectors(
    report: SkewReport,
    store: FeatureStore,
    vectors: Sequence[FeatureRow],
    counts: EventCounts | None,
) -> None:
    """The learned ranker's logged `shopper_item` vectors against the same features
    computed from the offline rows at the times the served rows were stamped with: the
    pair function and the rows must both agree for a vector to match."""
    if not vectors:
        return
    report.by_feature.update({f"{SHOPPER_ITEM.name}:{name}": 0 for name in PAIR_FEATURES})
    stamps = {USER_PROFILE.name: "user_as_of", SESSION_CONTEXT.name: "session_as_of"}
    offline_users = {
        view: _historical(store, view, [(v.entity_id, v.values.get(stamp)) for v in vectors])
        for view, stamp in stamps.items()
    }
    items = [(str(v.values.get("item_id")), v.values.get("item_as_of")) for v in vectors]
    offline_items = _historical(store, PRODUCT_STATS.name, items)
    for i, vector in enumerate(vectors):
        user = {view: row for view, rows in offline_users.items() if (row := rows[i]) is not None}
        values = dict(zip(PAIR_FEATURES, pair_features(user, offline_items[i]), strict=True))
        offline = FeatureRow(SHOPPER_ITEM.name, vector.entity_id, vector.as_of, values)
        if _compare(report, vector, offline) or counts is None:
            continue
        if _late_inputs(vector, counts):
            report.count_late(LATE_EVENTS)


def _historical(
    store: FeatureStore, view: str, requests: Sequence[tuple[str, FeatureValue]]
) -> list[FeatureRow | None]:
    """Point-in-time rows for the requests that have a time (the served vector read a
    row); None for the rest (it read none, and so does the recomputation)."""
    timed = [(i, (entity, float(t))) for i, (entity, t) in enumerate(requests)
             if isinstance(t, int | float)]  # fmt: skip
    answers = store.historical(view, [r for _, r in timed]) if timed else []
    out: list[FeatureRow | None] = [None] * len(requests)
    for (i, _), row in zip(timed, answers, strict=True):
        out[i] = row
    return out


def _late_inputs(vector: FeatureRow, counts: EventCounts) -> bool:
    """A row the vector was computed from had fewer events than training sees for its
    time: events arrived after it was served."""
    inputs = (
        (USER_PROFILE.name, vector.entity_id, "user_as_of", "user_events"),
        (PRODUCT_STATS.name, str(vector.values.get("item_id")), "item_as_of", "item_events"),
    )
    for view, entity, stamp, seen in inputs:
        as_of, n = vector.values.get(stamp), vector.values.get(seen)
        if (
            isinstance(as_of, float)
            and isinstance(n, int)
            and n < counts.within_horizon(view, entity, as_of)
        ):
            return True
    return False


def online_sample(
    store: FeatureStore, events: Iterable[Event], n: int, seed: int = 0
) -> list[FeatureRow]:
    """The online rows of up to `n` users and `n` items that occur in `events`, at random."""
    users: set[str] = set()
    items: set[str] = set()
    for event in events:
        if (subject := user_of(event)) is not None:
            users.add(subject)
        if (item := item_of(event)) is not None:
            items.add(item)
    rng = random.Random(seed)
    rows: list[FeatureRow] = []
    for user in rng.sample(sorted(users), min(n, len(users))):
        rows.extend(store.read_user(user).values())
    picked = rng.sample(sorted(items), min(n, len(items)))
    rows.extend(store.read_items(picked).values())
    return rows


def same_value(a: FeatureValue, b: FeatureValue) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _differing(online: FeatureRow, offline: FeatureRow) -> list[str]:
    spec = SHOPPER_ITEM if online.view == SHOPPER_ITEM.name else VIEWS[online.view]
    return [
        name
        for name in spec.feature_names
        if not same_value(online.values.get(name), offline.values.get(name))
    ]


def _compare(report: SkewReport, online: FeatureRow, offline: FeatureRow | None) -> bool:
    """Count the row in; True if it matches."""
    report.checked += 1
    if offline is None:
        report.mismatches += 1
        report.missing_offline += 1
        return False
    differing = _differing(online, offline)
    if not differing:
        return True
    report.mismatches += 1
    for name in differing:
        report.by_feature[f"{online.view}:{name}"] += 1
        if len(report.examples) < EXAMPLES:
            report.examples.append(
                Mismatch(
                    online.view,
                    online.entity_id,
                    online.as_of,
                    name,
                    online.values.get(name),
                    offline.values.get(name),
                )
            )
    return False


def _jsonable(value: FeatureValue) -> Any:
    return list(value) if isinstance(value, tuple) else value
