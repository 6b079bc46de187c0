"""The skew check: do the rows the online path served or holds equal what training sees?

Each online row says the value of its view for one entity as of a time; the offline
store's point-in-time answer for that entity and time must be the same, feature by
feature. Floats compare exactly: both sides run the same functions on the same events.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shopper.domain.event import Event
from shopper.domain.features.engine import item_of, user_of
from shopper.domain.features.spec import VIEWS, FeatureRow, FeatureValue
from shopper.ports.feature_store import FeatureStore

EXAMPLES = 10  # mismatches quoted in a report


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
    missing_offline: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)  # "view:feature" -> rows
    sources: dict[str, int] = field(default_factory=dict)  # "served" / "online" -> rows
    examples: list[Mismatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = [
            {**asdict(m), "online": _jsonable(m.online), "offline": _jsonable(m.offline)}
            for m in self.examples
        ]
        return out


def check_skew(store: FeatureStore, observed: dict[str, Sequence[FeatureRow]]) -> SkewReport:
    """Compare online rows, grouped by where they came from ("served", "online"), with
    the offline store's point-in-time rows for the same entity and time."""
    report = SkewReport(sources={source: len(rows) for source, rows in observed.items()})
    rows = [row for source_rows in observed.values() for row in source_rows]
    for view in sorted({row.view for row in rows}):
        view_rows = [row for row in rows if row.view == view]
        report.by_feature.update({f"{view}:{name}": 0 for name in VIEWS[view].feature_names})
        offline = store.historical(view, [(r.entity_id, r.as_of) for r in view_rows])
        for online_row, offline_row in zip(view_rows, offline, strict=True):
            _compare(report, online_row, offline_row)
    return report


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


def _compare(report: SkewReport, online: FeatureRow, offline: FeatureRow | None) -> None:
    report.checked += 1
    if offline is None:
        report.mismatches += 1
        report.missing_offline += 1
        return
    differing = [
        name
        for name in VIEWS[online.view].feature_names
        if not same_value(online.values.get(name), offline.values.get(name))
    ]
    if not differing:
        return
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


def _jsonable(value: FeatureValue) -> Any:
    return list(value) if isinstance(value, tuple) else value
