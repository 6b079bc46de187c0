"""In-memory feature store: the embedded fake of the Feast adapter, same semantics."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

from shopper.domain.features.spec import (
    PRODUCT_STATS,
    USER_VIEWS,
    VIEWS,
    FeatureRow,
)
from shopper.ports.feature_store import PointInTime


class InMemoryFeatureStore:
    def __init__(self) -> None:
        self._online: dict[tuple[str, str], FeatureRow] = {}
        # view -> entity -> rows sorted by as_of (one per as_of)
        self._offline: dict[str, dict[str, list[FeatureRow]]] = {}
        self._lock = threading.Lock()

    def push(self, rows: Sequence[FeatureRow]) -> None:
        with self._lock:
            for row in rows:
                # An older row than the stored one is dropped (as Feast's Redis store
                # does): a replica that lost an entity must not set it back.
                stored = self._online.get((row.view, row.entity_id))
                if stored is None or row.as_of >= stored.as_of:
                    self._online[(row.view, row.entity_id)] = row

    def read_user(self, user_id: str) -> dict[str, FeatureRow]:
        with self._lock:
            found = (self._online.get((v.name, user_id)) for v in USER_VIEWS)
            return {row.view: row for row in found if row is not None}

    def read_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, FeatureRow]]:
        found = {user: self.read_user(user) for user in user_ids}
        return {user: rows for user, rows in found.items() if rows}

    def read_items(self, item_ids: Sequence[str]) -> dict[str, FeatureRow]:
        with self._lock:
            found = (self._online.get((PRODUCT_STATS.name, i)) for i in item_ids)
            return {row.entity_id: row for row in found if row is not None}

    def replace_offline(self, view: str, rows: Sequence[FeatureRow]) -> None:
        table: dict[str, dict[float, FeatureRow]] = {}
        for row in rows:
            table.setdefault(row.entity_id, {})[row.as_of] = row
        with self._lock:
            self._offline[view] = {
                entity: [by_time[t] for t in sorted(by_time)] for entity, by_time in table.items()
            }

    def historical(self, view: str, requests: Sequence[PointInTime]) -> list[FeatureRow | None]:
        ttl = VIEWS[view].ttl_s
        with self._lock:
            table = self._offline.get(view, {})
            return [_as_of(table.get(entity, []), ts, ttl) for entity, ts in requests]

    def close(self) -> None:
        pass


def _as_of(rows: list[FeatureRow], ts: float, ttl: float) -> FeatureRow | None:
    at = bisect.bisect_right(rows, ts, key=lambda r: r.as_of)
    if at == 0 or rows[at - 1].as_of < ts - ttl:
        return None
    return rows[at - 1]
