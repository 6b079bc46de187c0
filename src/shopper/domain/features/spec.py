"""The feature views: names, entities, feature names and types, defined once.

`feature_repo/` builds the Feast definitions from these; the functions in
`user_profile`, `product_stats` and `session_context` compute exactly these features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

FeatureValue = int | float | bool | str | tuple[str, ...] | None

# Every row also carries `as_of`: the event time (epoch seconds) its values hold at.
AS_OF = "as_of"


class Dtype(StrEnum):
    INT64 = "int64"
    FLOAT64 = "float64"
    BOOL = "bool"
    STRING = "string"
    STRING_LIST = "string_list"


@dataclass(frozen=True, slots=True)
class EntitySpec:
    name: str
    join_key: str
    description: str


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    dtype: Dtype
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class ViewSpec:
    name: str
    entity: EntitySpec
    features: tuple[FeatureSpec, ...]
    ttl_s: float  # a training row older than this gets no value (Feast's ttl)
    description: str

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The values of one view for one entity, computed from its events up to `as_of`."""

    view: str
    entity_id: str
    as_of: float
    values: Mapping[str, FeatureValue]


USER = EntitySpec(
    "user", "user_id", "a shopper: `u:<user_id>` when signed in, else `s:<session_id>`"
)
ITEM = EntitySpec("item", "item_id", "a catalog item")

DAY_S = 86_400.0

USER_PROFILE = ViewSpec(
    "user_profile",
    USER,
    (
        FeatureSpec("session_count_7d", Dtype.INT64),
        FeatureSpec("interaction_count", Dtype.INT64),
        FeatureSpec("avg_cart_value", Dtype.FLOAT64),
        FeatureSpec("category_affinity", Dtype.STRING),
        FeatureSpec("last_seen", Dtype.FLOAT64, nullable=True),
    ),
    ttl_s=90 * DAY_S,
    description="who the shopper is: activity, cart value, favourite categories",
)
PRODUCT_STATS = ViewSpec(
    "product_stats",
    ITEM,
    (
        FeatureSpec("views_1h", Dtype.INT64),
        FeatureSpec("purchases_24h", Dtype.INT64),
        FeatureSpec("view_to_purchase_rate", Dtype.FLOAT64),
        FeatureSpec("trending_score", Dtype.FLOAT64),
        FeatureSpec("price", Dtype.FLOAT64, nullable=True),
        FeatureSpec("in_stock", Dtype.BOOL),
        FeatureSpec("age_hours", Dtype.FLOAT64),
        FeatureSpec("category", Dtype.STRING),
    ),
    ttl_s=90 * DAY_S,
    description="demand, trend, price, stock and category of an item",
)
SESSION_CONTEXT = ViewSpec(
    "session_context",
    USER,
    (
        FeatureSpec("recent_item_ids", Dtype.STRING_LIST),
        FeatureSpec("cart_item_ids", Dtype.STRING_LIST),
        FeatureSpec("category_interest", Dtype.STRING),
    ),
    ttl_s=DAY_S,
    description="the shopper's current session: recent items, cart, category interest",
)

VIEWS: Mapping[str, ViewSpec] = {v.name: v for v in (USER_PROFILE, PRODUCT_STATS, SESSION_CONTEXT)}
USER_VIEWS = (USER_PROFILE, SESSION_CONTEXT)
