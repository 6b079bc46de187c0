"""The feature store on Feast: push sources to the online store (SQLite or Redis), file
offline store with point-in-time joins. Translates rows to and from Feast; decides nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopper.adapters.feast_repo import (
    TIMESTAMP,
    FeastSettings,
    load_definitions,
    offline_schema,
    repo_config,
)
from shopper.domain.features.spec import (
    AS_OF,
    PRODUCT_STATS,
    USER_VIEWS,
    VIEWS,
    Dtype,
    FeatureRow,
    FeatureValue,
    ViewSpec,
)
from shopper.errors import MissingExtra
from shopper.ports.feature_store import PointInTime

try:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import FeatureStore as FeastStore
    from feast import FeatureView, FileSource
    from feast.data_source import PushMode
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if (exc.name or "").partition(".")[0] not in ("feast", "pyarrow", "pandas"):
        raise
    raise MissingExtra("feast", "feast") from None

_REQUEST = "_shopper_request"

# Every push makes Feast re-read its registry file (for feature services to precompute)
# and say so at INFO: one line per micro-batch. Its warnings still show.
logging.getLogger("feast.infra.registry.registry").setLevel(logging.WARNING)


class FeastFeatureStore:
    """One Feast store. Call `apply` (or `ensure_applied`) before pushing or reading."""

    def __init__(self, settings: FeastSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = FeastStore(config=repo_config(settings))
        self._push_sources: dict[str, str] = {}

    def apply(self) -> list[str]:
        """Register the definitions and create the stores' tables; returns view names."""
        objects = load_definitions(self.settings.definitions)
        views = [o.name for o in objects if isinstance(o, FeatureView)]
        self._store.apply(objects)
        for name in views:
            path = self._offline_path(name)
            if not path.exists():
                _write_parquet(path, offline_schema(VIEWS[name]).empty_table())
        return views

    def ensure_applied(self) -> None:
        """Apply the definitions unless every view is registered already."""
        try:
            known = {v.name for v in self._store.list_feature_views()}
        except Exception:  # no registry file yet
            known = set()
        if not set(VIEWS) <= known:
            self.apply()

    def push(self, rows: Sequence[FeatureRow]) -> None:
        by_view: dict[str, list[FeatureRow]] = {}
        for row in rows:
            by_view.setdefault(row.view, []).append(row)
        for name, view_rows in by_view.items():
            frame = pd.DataFrame(_records(VIEWS[name], view_rows))
            self._store.push(self._push_source(name), frame, to=PushMode.ONLINE)

    def read_user(self, user_id: str) -> dict[str, FeatureRow]:
        rows = self._read_online(USER_VIEWS, USER_VIEWS[0].entity.join_key, [user_id])
        return {row.view: row for row in rows}

    def read_items(self, item_ids: Sequence[str]) -> dict[str, FeatureRow]:
        key = PRODUCT_STATS.entity.join_key
        return {row.entity_id: row for row in self._read_online([PRODUCT_STATS], key, item_ids)}

    def replace_offline(self, view: str, rows: Sequence[FeatureRow]) -> None:
        spec = VIEWS[view]
        table = pa.Table.from_pylist(_records(spec, rows), schema=offline_schema(spec))
        _write_parquet(self._offline_path(view), table)

    def historical(self, view: str, requests: Sequence[PointInTime]) -> list[FeatureRow | None]:
        spec = VIEWS[view]
        # Each (entity, time) is asked once: Feast's file store also collapses repeats
        # (feast-dev/feast#6787), and the answer is the same.
        unique = sorted(set(requests))
        if not unique:
            return []
        key = spec.entity.join_key
        entity_df = pd.DataFrame(
            {
                key: [entity for entity, _ in unique],
                TIMESTAMP: [_timestamp(ts) for _, ts in unique],
                _REQUEST: range(len(unique)),
            }
        )
        refs = [f"{view}:{name}" for name in (AS_OF, *spec.feature_names)]
        frame = self._store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        # Feast's file store drops a request that no row qualifies for (rather than leaving
        # it empty), so answers are matched to requests by id, not by position.
        found: dict[PointInTime, FeatureRow] = {}
        for record in frame.to_dict("records"):
            as_of = _number(record[AS_OF])
            if as_of is not None:
                entity = str(record[key])
                values = {f.name: _value(f.dtype, record[f.name]) for f in spec.features}
                found[unique[int(record[_REQUEST])]] = FeatureRow(view, entity, as_of, values)
        return [found.get(request) for request in requests]

    def teardown(self) -> None:
        """Delete this project's online data (Redis keys, SQLite tables)."""
        self._store.teardown()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        # Feast has no close(): its Redis client would linger until garbage collection.
        online = getattr(self._store._get_provider(), "online_store", None)
        client = getattr(online, "_client", None)
        if client is not None and hasattr(client, "close"):
            client.close()

    def _read_online(
        self, views: Sequence[ViewSpec], key: str, entity_ids: Sequence[str]
    ) -> list[FeatureRow]:
        if not entity_ids:
            return []
        refs = [f"{v.name}:{name}" for v in views for name in (AS_OF, *v.feature_names)]
        answer = self._store.get_online_features(
            features=refs,
            entity_rows={key: list(entity_ids)},
            full_feature_names=True,
        ).proto
        # The response's own protos, read once: its to_dict() would convert every value
        # to Python only for this loop to convert it again (a third of a 100-item read).
        columns = dict(zip(answer.metadata.feature_names.val, answer.results, strict=True))
        rows = []
        for view in views:
            as_of_column = columns[f"{view.name}__{AS_OF}"].values
            features = [(f, columns[f"{view.name}__{f.name}"].values) for f in view.features]
            for n, entity in enumerate(entity_ids):
                if as_of_column[n].WhichOneof("val") != "double_val":
                    continue  # no row for this entity
                values = {f.name: _proto_value(f.dtype, column[n]) for f, column in features}
                rows.append(FeatureRow(view.name, entity, as_of_column[n].double_val, values))
        return rows

    def _push_source(self, view: str) -> str:
        if view not in self._push_sources:
            source = self._store.get_feature_view(view).stream_source
            assert source is not None, f"feature view {view} has no push source"
            self._push_sources[view] = source.name
        return self._push_sources[view]

    def _offline_path(self, view: str) -> Path:
        source = self._store.get_feature_view(view).batch_source
        assert isinstance(source, FileSource)
        return self.settings.data_dir.resolve() / source.path


def _records(spec: ViewSpec, rows: Sequence[FeatureRow]) -> list[dict[str, Any]]:
    key = spec.entity.join_key
    return [
        {
            key: row.entity_id,
            TIMESTAMP: _timestamp(row.as_of),
            AS_OF: row.as_of,
            **{f.name: _column(f.dtype, row.values.get(f.name)) for f in spec.features},
        }
        for row in rows
    ]


def _timestamp(epoch: float) -> pd.Timestamp:
    # Microseconds: what an ISO timestamp can say, and what Feast's joins keep exactly.
    return pd.Timestamp(round(epoch * 1_000_000), unit="us", tz="UTC")


def _column(dtype: Dtype, value: FeatureValue) -> Any:
    if dtype is Dtype.STRING_LIST and isinstance(value, tuple):
        return json.dumps(list(value), separators=(",", ":"))  # see feast_repo._ARROW
    return value


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _proto_value(dtype: Dtype, value: Any) -> FeatureValue:
    """A Feast ValueProto of the online store as the feature's type."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    raw = getattr(value, kind)
    if dtype is Dtype.STRING_LIST:
        return tuple(json.loads(raw))
    if dtype is Dtype.FLOAT64:
        return None if math.isnan(raw) else float(raw)
    return raw  # type: ignore[no-any-return]


def _value(dtype: Dtype, value: Any) -> FeatureValue:
    """Feast's value (online: Python; offline: pandas/numpy) as the feature's type."""
    if dtype is Dtype.STRING_LIST:
        return None if value is None else tuple(str(v) for v in json.loads(value))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if dtype is Dtype.INT64:
        return int(value)
    if dtype is Dtype.FLOAT64:
        return float(value)
    if dtype is Dtype.BOOL:
        return bool(value)
    return str(value)


def _write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, aside)
    os.replace(aside, path)
