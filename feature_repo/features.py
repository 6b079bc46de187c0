"""shopper's Feast definitions: entities, sources and feature views. Definitions only.

`shopper features apply` registers these (Feast runs every .py in this folder, so nothing
else belongs here). The feature names and types come from `shopper.domain.features.spec`,
the same table the feature functions are checked against; the FileSource paths are
relative to the feature store's data folder (`<data_dir>/features/feast`).
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Bool, Float64, Int64, String

from shopper.domain.features.spec import (
    AS_OF,
    ITEM,
    PRODUCT_STATS,
    SESSION_CONTEXT,
    USER,
    USER_PROFILE,
    Dtype,
    ViewSpec,
)

_FEAST_TYPES = {
    Dtype.INT64: Int64,
    Dtype.FLOAT64: Float64,
    Dtype.BOOL: Bool,
    Dtype.STRING: String,
    # Lists of ids as JSON arrays: Feast's file offline store hashes list columns element
    # by element on every retrieval, which takes seconds.
    Dtype.STRING_LIST: String,
}


def _schema(view: ViewSpec) -> list[Field]:
    return [Field(name=AS_OF, dtype=Float64, description="event time the row holds at")] + [
        Field(name=f.name, dtype=_FEAST_TYPES[f.dtype]) for f in view.features
    ]


user = Entity(
    name=USER.name,
    join_keys=[USER.join_key],
    value_type=ValueType.STRING,
    description=USER.description,
)
item = Entity(
    name=ITEM.name,
    join_keys=[ITEM.join_key],
    value_type=ValueType.STRING,
    description=ITEM.description,
)

user_profile_offline = FileSource(
    name="user_profile_offline",
    path="offline/user_profile.parquet",
    timestamp_field="event_timestamp",
)
user_profile_push = PushSource(name="user_profile_push", batch_source=user_profile_offline)
user_profile = FeatureView(
    name=USER_PROFILE.name,
    entities=[user],
    ttl=timedelta(seconds=USER_PROFILE.ttl_s),
    schema=_schema(USER_PROFILE),
    source=user_profile_push,
    online=True,
    description=USER_PROFILE.description,
)

product_stats_offline = FileSource(
    name="product_stats_offline",
    path="offline/product_stats.parquet",
    timestamp_field="event_timestamp",
)
product_stats_push = PushSource(name="product_stats_push", batch_source=product_stats_offline)
product_stats = FeatureView(
    name=PRODUCT_STATS.name,
    entities=[item],
    ttl=timedelta(seconds=PRODUCT_STATS.ttl_s),
    schema=_schema(PRODUCT_STATS),
    source=product_stats_push,
    online=True,
    description=PRODUCT_STATS.description,
)

session_context_offline = FileSource(
    name="session_context_offline",
    path="offline/session_context.parquet",
    timestamp_field="event_timestamp",
)
session_context_push = PushSource(name="session_context_push", batch_source=session_context_offline)
session_context = FeatureView(
    name=SESSION_CONTEXT.name,
    entities=[user],
    ttl=timedelta(seconds=SESSION_CONTEXT.ttl_s),
    schema=_schema(SESSION_CONTEXT),
    source=session_context_push,
    online=True,
    description=SESSION_CONTEXT.description,
)
