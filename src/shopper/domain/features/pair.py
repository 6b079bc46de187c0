"""The `shopper_item` features: what a (shopper, item) pair looks like to the learned
ranker, beyond the models' scores.

A pair has no events of its own, so it has no stored view: its features are computed,
by this one function, from the shopper's `user_profile` and `session_context` rows and
the item's `product_stats` row. The training set builder calls it on the offline store's
point-in-time rows, the processor on the online rows it reads for the candidates it is
about to rank, and the skew check on the offline rows for the times a served vector's
rows were stamped with. All values are floats; NaN means "not known" (LightGBM treats
it as missing, not as zero).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from shopper.domain.features.spec import (
    DAY_S,
    Dtype,
    EntitySpec,
    FeatureRow,
    FeatureSpec,
    FeatureValue,
    ViewSpec,
)

PAIR = EntitySpec("shopper_item", "user_id, item_id", "a shopper and a candidate item")

SHOPPER_ITEM = ViewSpec(
    "shopper_item",
    PAIR,
    tuple(
        FeatureSpec(name, Dtype.FLOAT64, nullable=True)
        for name in (
            "item_views_1h",
            "item_purchases_24h",
            "item_view_to_purchase",
            "item_trending",
            "item_log_price",
            "item_in_stock",
            "item_age_hours",
            "price_to_cart_value",  # the item's price over the shopper's usual cart line
            "category_affinity",  # the shopper's 7-day share of the item's category
            "category_interest",  # this session's share of the item's category
            "shopper_interactions",
            "shopper_sessions_7d",
            "session_items",
            "cart_items",
        )
    ),
    ttl_s=DAY_S,
    description="a shopper and a candidate: the item's demand and price against the "
    "shopper's habits and session",
)
PAIR_FEATURES = SHOPPER_ITEM.feature_names
NAN = math.nan

Values = Mapping[str, FeatureValue]


def pair_features(user: Mapping[str, FeatureRow], item: FeatureRow | None) -> tuple[float, ...]:
    """The pair's features in `PAIR_FEATURES` order, from the shopper's rows by view name
    (`user_profile`, `session_context`; either may be missing) and the item's
    `product_stats` row (None: the store has none)."""
    return combine(shopper_part(user), item_part(item))


@dataclass(frozen=True, slots=True)
class ShopperPart:
    """What the pair features take from the shopper's rows (the same for every item)."""

    cart_value: float
    affinity: FeatureValue
    interest: FeatureValue
    counts: tuple[float, float, float, float]  # interactions, sessions, session, cart items


@dataclass(frozen=True, slots=True)
class ItemPart:
    """What they take from the item's row (the same for every shopper)."""

    stats: tuple[float, ...]  # the item_* features, in order
    price: float
    category: FeatureValue


def shopper_part(user: Mapping[str, FeatureRow]) -> ShopperPart:
    profile = _values(user.get("user_profile"))
    session = _values(user.get("session_context"))
    return ShopperPart(
        _number(profile.get("avg_cart_value")),
        profile.get("category_affinity"),
        session.get("category_interest"),
        (
            _number(profile.get("interaction_count")),
            _number(profile.get("session_count_7d")),
            _count(session.get("recent_item_ids")),
            _count(session.get("cart_item_ids")),
        ),
    )


def item_part(item: FeatureRow | None) -> ItemPart:
    stats = _values(item)
    price = _number(stats.get("price"))
    return ItemPart(
        (
            _number(stats.get("views_1h")),
            _number(stats.get("purchases_24h")),
            _number(stats.get("view_to_purchase_rate")),
            _number(stats.get("trending_score")),
            math.log1p(price) if price >= 0 else NAN,  # NaN compares false: stays NaN
            _number(stats.get("in_stock")),
            _number(stats.get("age_hours")),
        ),
        price,
        stats.get("category"),
    )


def combine(shopper: ShopperPart, item: ItemPart) -> tuple[float, ...]:
    """The pair's features from its two parts: the item's, the crossed ones, the
    shopper's. (Split so a micro-batch computes each part once per shopper and item.)"""
    cart_value = shopper.cart_value
    return (
        *item.stats,
        item.price / cart_value if cart_value > 0 else NAN,  # NaN price: NaN
        _share(shopper.affinity, item.category),
        _share(shopper.interest, item.category),
        *shopper.counts,
    )


def _values(row: FeatureRow | None) -> Values:
    return row.values if row is not None else {}


def _number(value: FeatureValue) -> float:
    if value is None or isinstance(value, str | tuple):
        return NAN
    return float(value)


def _count(value: FeatureValue) -> float:
    return float(len(value)) if isinstance(value, tuple) else NAN


def _share(shares: FeatureValue, category: FeatureValue) -> float:
    """The share a category-shares JSON gives the item's category (0 when it has none);
    NaN when the shopper's row or the item's category is unknown."""
    if not isinstance(shares, str) or not isinstance(category, str) or not category:
        return NAN
    return _decoded(shares).get(category, 0.0)


@lru_cache(maxsize=4096)  # a shopper's shares are read once per candidate
def _decoded(shares: str) -> dict[str, float]:
    decoded = json.loads(shares)
    return {str(k): float(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}
