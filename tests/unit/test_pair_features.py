"""The `shopper_item` pair features: one definition, whether a micro-batch computes them
for many shoppers over one table of items or the skew check for one pair."""

from __future__ import annotations

import math

import numpy as np

from shopper.domain.features.pair import (
    PAIR_FEATURES,
    item_table,
    pair_features,
    pair_matrix,
    shopper_part,
)
from shopper.domain.features.spec import PRODUCT_STATS, SESSION_CONTEXT, USER_PROFILE, FeatureRow

T = 1_700_000_000.0


def item(item_id: str, price: float | None, category: str | None, views: int = 3) -> FeatureRow:
    values = {
        "views_1h": views,
        "purchases_24h": 1,
        "view_to_purchase_rate": 0.25,
        "trending_score": 0.5,
        "price": price,
        "in_stock": True,
        "age_hours": 12.0,
        "category": category,
    }
    return FeatureRow(PRODUCT_STATS.name, item_id, T, values)


def shopper(cart_value: float | None) -> dict[str, FeatureRow]:
    profile = {
        "avg_cart_value": cart_value,
        "category_affinity": '{"toys":0.75,"home":0.25}',
        "interaction_count": 12,
        "session_count_7d": 2,
    }
    context = {
        "recent_item_ids": ("a", "b", "c"),
        "cart_item_ids": ("a",),
        "category_interest": '{"toys":1.0}',
    }
    return {
        USER_PROFILE.name: FeatureRow(USER_PROFILE.name, "u:1", T, profile),
        SESSION_CONTEXT.name: FeatureRow(SESSION_CONTEXT.name, "u:1", T, context),
    }


def named(values: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(PAIR_FEATURES, values, strict=True))


def test_one_pairs_features_read_as_named() -> None:
    values = named(pair_features(shopper(40.0), item("a", 10.0, "toys")))
    assert values["item_views_1h"] == 3
    assert values["item_log_price"] == math.log1p(10.0)
    assert values["item_in_stock"] == 1.0
    assert values["price_to_cart_value"] == 0.25
    assert values["category_affinity"] == 0.75
    assert values["category_interest"] == 1.0
    assert values["shopper_interactions"] == 12
    assert (values["session_items"], values["cart_items"]) == (3, 1)


def test_unknowns_are_nan_and_an_unlisted_category_is_zero() -> None:
    nothing = named(pair_features({}, None))
    assert all(math.isnan(v) for v in nothing.values())
    values = named(pair_features(shopper(None), item("a", None, "garden")))
    assert math.isnan(values["item_log_price"]) and math.isnan(values["price_to_cart_value"])
    assert values["category_affinity"] == 0.0  # known category, not among the shopper's
    no_category = named(pair_features(shopper(40.0), item("a", 5.0, None)))
    assert math.isnan(no_category["category_affinity"])


def test_a_batch_table_gives_each_pair_what_the_one_pair_function_gives() -> None:
    rows = {
        "a": item("a", 10.0, "toys"),
        "b": item("b", None, "home", views=0),
        "c": item("c", 99.5, None),
        "d": item("d", 0.0, "garden"),
    }
    table = item_table(rows, ["d", "a", "missing", "b", "c", "a"])
    for user in (shopper(40.0), shopper(None), {}):
        candidates = ["c", "missing", "a", "d", "b"]
        batch = pair_matrix(shopper_part(user), table, candidates)
        one_by_one = np.array([pair_features(user, rows.get(i)) for i in candidates])
        np.testing.assert_array_equal(batch, one_by_one)  # NaN where NaN, bit for bit
