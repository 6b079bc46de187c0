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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

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
Matrix = npt.NDArray[np.float64]

Values = Mapping[str, FeatureValue]


def pair_features(user: Mapping[str, FeatureRow], item: FeatureRow | None) -> tuple[float, ...]:
    """The pair's features in `PAIR_FEATURES` order, from the shopper's rows by view name
    (`user_profile`, `session_context`; either may be missing) and the item's
    `product_stats` row (None: the store has none)."""
    table = item_table({"": item} if item is not None else {}, [""])
    return tuple(pair_matrix(shopper_part(user), table, [""])[0].tolist())


@dataclass(frozen=True, slots=True)
class ShopperPart:
    """What the pair features take from the shopper's rows (the same for every item)."""

    cart_value: float
    affinity: FeatureValue
    interest: FeatureValue
    counts: tuple[float, float, float, float]  # interactions, sessions, session, cart items


ITEM_STATS = 7  # the item_* features, first in `PAIR_FEATURES`


@dataclass(frozen=True, slots=True)
class ItemTable:
    """What the pair features take from items' rows (the same for every shopper): computed
    once for all the shoppers of a micro-batch, who share the rows they were read from."""

    index: Mapping[str, int]  # item id -> row
    values: Matrix  # per item: the item_* features, in order, then the price
    categories: Sequence[FeatureValue]


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


def item_table(items: Mapping[str, FeatureRow], item_ids: Iterable[str]) -> ItemTable:
    """The items' part of the pair features, from their `product_stats` rows (an item
    missing from `items` has none: its features are NaN)."""
    ids = list(dict.fromkeys(item_ids))
    values = np.empty((len(ids), ITEM_STATS + 1))
    categories: list[FeatureValue] = []
    for n, item in enumerate(ids):
        stats = _values(items.get(item))
        price = _number(stats.get("price"))
        values[n] = (
            _number(stats.get("views_1h")),
            _number(stats.get("purchases_24h")),
            _number(stats.get("view_to_purchase_rate")),
            _number(stats.get("trending_score")),
            math.log1p(price) if price >= 0 else NAN,  # NaN compares false: stays NaN
            _number(stats.get("in_stock")),
            _number(stats.get("age_hours")),
            price,
        )
        categories.append(stats.get("category"))
    return ItemTable({item: n for n, item in enumerate(ids)}, values, categories)


def pair_matrix(shopper: ShopperPart, items: ItemTable, item_ids: Sequence[str]) -> Matrix:
    """One row of `PAIR_FEATURES` per item of `item_ids` (each in `items`): the item's
    features, the crossed ones, the shopper's."""
    rows = np.fromiter((items.index[i] for i in item_ids), dtype=np.intp, count=len(item_ids))
    values = items.values[rows]
    out = np.empty((len(rows), len(PAIR_FEATURES)))
    out[:, :ITEM_STATS] = values[:, :ITEM_STATS]
    cart_value = shopper.cart_value
    # The price over the shopper's usual cart line (a NaN price: NaN).
    out[:, ITEM_STATS] = values[:, ITEM_STATS] / cart_value if cart_value > 0 else NAN
    categories = [items.categories[r] for r in rows.tolist()]
    out[:, ITEM_STATS + 1] = _shares(shopper.affinity, categories)
    out[:, ITEM_STATS + 2] = _shares(shopper.interest, categories)
    out[:, ITEM_STATS + 3 :] = shopper.counts
    return out


def _values(row: FeatureRow | None) -> Values:
    return row.values if row is not None else {}


def _number(value: FeatureValue) -> float:
    if value is None or isinstance(value, str | tuple):
        return NAN
    return float(value)


def _count(value: FeatureValue) -> float:
    return float(len(value)) if isinstance(value, tuple) else NAN


def _shares(shares: FeatureValue, categories: Sequence[FeatureValue]) -> list[float]:
    """The share a category-shares JSON gives each item's category (0 when it has none);
    NaN when the shopper's row or the item's category is unknown."""
    if not isinstance(shares, str):
        return [NAN] * len(categories)
    decoded = _decoded(shares)
    return [decoded.get(c, 0.0) if isinstance(c, str) and c else NAN for c in categories]


@lru_cache(maxsize=4096)  # a shopper's shares are read once per batch
def _decoded(shares: str) -> dict[str, float]:
    decoded = json.loads(shares)
    return {str(k): float(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}
