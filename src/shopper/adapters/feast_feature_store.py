"""The feature store on Feast: push sources to the online store (SQLite or Redis), file
offline store with point-in-time joins. Translates rows to and from Feast; decides nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
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
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if (exc.name or "").partition(".")[0] not in ("feast", "pyarrow", "pandas"):
        raise
    raise MissingExtra("feast", "feast") from None

_REQUEST = "_shopper_request"
HISTORICAL_CHUNK = 2_000  # point-in-time requests per Feast join (see `historical`)

# Every push makes Feast re-read its registry file (for feature services to precompute)
# and say so at INFO: one line per micro-batch. Its warnings still show.
logging.getLogger("feast.infra.registry.registry").setLevel(logging.WARNING)


class FeastFeatureStore:
    """One Feast store. Call `apply` (or `ensure_applied`) before pushing or reading."""

    def __init__(self, settings: FeastSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = FeastStore(config=repo_config(settings))
        self._online_views: dict[str, FeatureView] = {}  # the registry's, for reads

    def apply(self) -> list[str]:
        """Register the definitions and create the stores' tables; returns view names."""
        objects = load_definitions(self.settings.definitions)
        views = [o.name for o in objects if isinstance(o, FeatureView)]
        self._store.apply(objects)
        self._online_views.clear()
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
        # Feast 0.67's `push` turns the rows into a DataFrame, then an Arrow table, then
        # protos, looking the view up in the registry on the way (a third of the feature
        # thread's time in the demo, holding the GIL against the processor and the API).
        # Its last step is `provider.online_write_batch` (public: the Provider and
        # OnlineStore interface) with one (entity key, values, event time) per row; shopper
        # makes those protos itself and calls that step. tests/contract checks that what
        # is written this way reads back through `get_online_features` as pushed.
        by_view: dict[str, list[FeatureRow]] = {}
        for row in rows:
            by_view.setdefault(row.view, []).append(row)
        for name, view_rows in by_view.items():
            spec = VIEWS[name]
            view_rows = self._not_older(spec, view_rows)
            if not view_rows:
                continue
            self._store.provider.online_write_batch(
                self._store.config,
                self._online_view(name),
                [_online_record(spec, row) for row in _latest_per_entity(view_rows)],
                progress=None,
            )

    def read_user(self, user_id: str) -> dict[str, FeatureRow]:
        return self.read_users([user_id]).get(user_id, {})

    def read_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, FeatureRow]]:
        out: dict[str, dict[str, FeatureRow]] = {}
        for row in self._read_online(USER_VIEWS, user_ids):
            out.setdefault(row.entity_id, {})[row.view] = row
        return out

    def read_items(self, item_ids: Sequence[str]) -> dict[str, FeatureRow]:
        return {row.entity_id: row for row in self._read_online([PRODUCT_STATS], item_ids)}

    def replace_offline(self, view: str, rows: Sequence[FeatureRow]) -> None:
        spec = VIEWS[view]
        table = pa.Table.from_pylist(_records(spec, rows), schema=offline_schema(spec))
        _write_parquet(self._offline_path(view), table)

    def historical(self, view: str, requests: Sequence[PointInTime]) -> list[FeatureRow | None]:
        # Each (entity, time) is asked once: Feast's file store also collapses repeats
        # (feast-dev/feast#6787), and the answer is the same. Its point-in-time join pairs
        # every request with every row of the request's entity before filtering by time,
        # so memory grows with requests x rows per entity: a popular item asked about at
        # a few thousand training moments took the UCI evaluation past 22 GB in one call.
        # Requests go in chunks of `HISTORICAL_CHUNK`, grouped by entity.
        unique = sorted(set(requests))
        found: dict[PointInTime, FeatureRow] = {}
        for start in range(0, len(unique), HISTORICAL_CHUNK):
            found.update(self._historical(VIEWS[view], unique[start : start + HISTORICAL_CHUNK]))
        return [found.get(request) for request in requests]

    def _historical(
        self, spec: ViewSpec, unique: Sequence[PointInTime]
    ) -> dict[PointInTime, FeatureRow]:
        key = spec.entity.join_key
        entity_df = pd.DataFrame(
            {
                key: [entity for entity, _ in unique],
                TIMESTAMP: [_timestamp(ts) for _, ts in unique],
                _REQUEST: range(len(unique)),
            }
        )
        refs = [f"{spec.name}:{name}" for name in (AS_OF, *spec.feature_names)]
        frame = self._store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        # Feast's file store drops a request that no row qualifies for (rather than leaving
        # it empty), so answers are matched to requests by id, not by position.
        found: dict[PointInTime, FeatureRow] = {}
        for record in frame.to_dict("records"):
            as_of = _number(record[AS_OF])
            if as_of is not None:
                entity = str(record[key])
                values = {f.name: _value(f.dtype, record[f.name]) for f in spec.features}
                found[unique[int(record[_REQUEST])]] = FeatureRow(spec.name, entity, as_of, values)
        return found

    def teardown(self) -> None:
        """Delete this project's online data (Redis keys, SQLite tables)."""
        self._store.teardown()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        # Feast has no close(): its Redis client would linger until garbage collection.
        online = getattr(self._store.provider, "online_store", None)
        client = getattr(online, "_client", None)
        if client is not None and hasattr(client, "close"):
            client.close()

    def _not_older(self, spec: ViewSpec, rows: list[FeatureRow]) -> list[FeatureRow]:
        """The rows not older than what the online store holds (Feast's stores overwrite
        whatever is pushed): a processor replica that has just lost an item to another
        must not set its row back. One read per push; a row at the same `as_of` still
        replaces (a late event's correction)."""
        stored = {
            r.entity_id: r.as_of for r in self._read_online([spec], [r.entity_id for r in rows])
        }
        return [r for r in rows if r.as_of >= stored.get(r.entity_id, r.as_of)]

    def _read_online(
        self, views: Sequence[ViewSpec], entity_ids: Sequence[str]
    ) -> list[FeatureRow]:
        # Feast 0.67: `get_online_features` spends most of a 100-item read (p50 6 ms, p99
        # 10-14 ms) around the store: registry lookups per call, entity keys built from
        # Python values, a response proto copied value by value. It adds nothing to the
        # values: its per-view step is exactly `provider.online_read` (public: the
        # Provider and OnlineStore interface) for the view and the unique entity keys.
        # So shopper calls that step itself, with the registry's views fetched once and
        # entity keys cached. tests/contract/test_feature_store.py checks that the answers
        # equal `get_online_features`, so an upgrade that changes either fails there.
        unique = list(dict.fromkeys(entity_ids))
        if not unique:
            return []
        provider = self._store.provider
        rows = []
        for view in views:
            keys = [_entity_key(view.entity.join_key, entity) for entity in unique]
            answers = provider.online_read(
                config=self._store.config,
                table=self._online_view(view.name),
                entity_keys=keys,
                # a fresh list: the Redis store appends its timestamp field to it
                requested_features=[AS_OF, *view.feature_names],
            )
            for entity, (_, values) in zip(unique, answers, strict=True):
                row = _online_row(view, entity, values)
                if row is not None:
                    rows.append(row)
        return rows

    def _online_view(self, name: str) -> FeatureView:
        # Once per adapter (and again after `apply`): `get_feature_view` asks the registry,
        # which re-reads its file whenever its cache expires, on the read path. What the
        # online stores take from the view (its name, its features) changes only with the
        # definitions, which shopper's ViewSpecs change with: a restart anyway.
        view = self._online_views.get(name)
        if view is None:
            view = self._online_views[name] = self._store.get_feature_view(name)
        return view

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


def _latest_per_entity(rows: Sequence[FeatureRow]) -> list[FeatureRow]:
    """Each entity's last row (rows come in the order they were computed): one write per
    entity, as the last write would have won anyway."""
    return list({row.entity_id: row for row in rows}.values())


def _online_record(
    spec: ViewSpec, row: FeatureRow
) -> tuple[EntityKeyProto, dict[str, ValueProto], datetime, None]:
    """A row as `online_write_batch` takes it (what Feast's push makes of a DataFrame row:
    a missing value is an empty ValueProto, as Feast makes of None and NaN)."""
    values = {AS_OF: ValueProto(double_val=row.as_of)}
    for feature in spec.features:
        values[feature.name] = _proto(feature.dtype, row.values.get(feature.name))
    event_time = datetime.fromtimestamp(round(row.as_of * 1_000_000) / 1_000_000, UTC)
    return _entity_key(spec.entity.join_key, row.entity_id), values, event_time, None


def _proto(dtype: Dtype, value: FeatureValue) -> ValueProto:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ValueProto()
    if dtype is Dtype.FLOAT64:
        return ValueProto(double_val=float(value))  # type: ignore[arg-type]
    if dtype is Dtype.INT64:
        return ValueProto(int64_val=int(value))  # type: ignore[arg-type]
    if dtype is Dtype.BOOL:
        return ValueProto(bool_val=bool(value))
    return ValueProto(string_val=str(_column(dtype, value)))


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


@lru_cache(maxsize=8_192)  # about 1 KB a key: the hot candidates, not the whole catalog
def _entity_key(join_key: str, entity_id: str) -> EntityKeyProto:
    """The entity key Feast's online stores look rows up by (shared: never mutated)."""
    key = EntityKeyProto()
    key.join_keys.append(join_key)
    key.entity_values.add(string_val=entity_id)  # cheaper than the constructor's nesting
    return key


def _online_row(
    view: ViewSpec, entity: str, values: Mapping[str, ValueProto] | None
) -> FeatureRow | None:
    """One answer of `online_read` as a row; None when the entity has no row (SQLite
    answers None, Redis empty values)."""
    as_of = values.get(AS_OF) if values is not None else None
    if values is None or as_of is None or as_of.WhichOneof("val") != "double_val":
        return None
    features = {f.name: _proto_value(f.dtype, values.get(f.name)) for f in view.features}
    return FeatureRow(view.name, entity, as_of.double_val, features)


def _proto_value(dtype: Dtype, value: ValueProto | None) -> FeatureValue:
    """A Feast ValueProto of the online store as the feature's type (None: a feature
    the store has no value for)."""
    kind = value.WhichOneof("val") if value is not None else None
    if kind is None or kind == "null_val":
        return None
    raw = getattr(value, kind)
    if dtype is Dtype.FLOAT64:
        return None if math.isnan(raw) else float(raw)
    if dtype is Dtype.STRING_LIST:
        return tuple(json.loads(raw))
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
