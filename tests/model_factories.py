"""Small real ranking models, fitted by the trainer on synthetic shoppers in a second or so."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from shopper.domain.event import INTEREST_WEIGHT, EventType
from shopper.domain.learned import FEATURE_NAMES, LearnedRanker
from shopper.domain.model import RankingModel, Repurchase
from shopper.domain.tier import TierThresholds
from shopper.training.data import CATALOG_COLUMNS, EVENT_COLUMNS, Interactions
from shopper.training.fit import FitSettings, fit

T0 = 1_700_000_000.0
DAY = 86_400.0
TYPES = (("view", 1.0, False), ("add_to_cart", 3.0, False), ("purchase", 5.0, True))
CATEGORIES = ("shoes", "coats", "hats", "bags")

# Small enough to fit fast, large enough that every part is there (ALS, EASE, segments).
TINY_SETTINGS = FitSettings(neighbours=5, als_factors=4, als_iterations=3)


def interactions(
    shoppers: int = 40, items: int = 24, events: int = 600, seed: int = 1
) -> Interactions:
    """Shoppers `u:0...` (in the UK or Germany, on mobile or desktop) viewing, carting and
    buying items `sku-0...` of four categories over 30 days; the last two items are new,
    listed an hour before the data ends, with no events yet."""
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    for _ in range(events):
        n = rng.randrange(shoppers)
        item = n % 4 + 4 * rng.randrange((items - 2) // 4)  # each shopper keeps to a category
        kind, weight, purchase = rng.choice(TYPES)
        ts = T0 + rng.uniform(0, 30 * DAY)
        country, device = ("gb", "de")[n % 2], ("mobile", "desktop", None)[n % 3]
        rows.append((f"u:{n}", f"sku-{item}", ts, kind, weight, purchase, country, device, None))
    end = max(r[2] for r in rows)
    catalog = [
        (f"sku-{i}", f"item {i} cat_{CATEGORIES[i % 4]} brand_b{i % 3}", T0 - DAY)
        for i in range(items - 2)
    ]
    for i in range(items - 2, items):
        catalog.append((f"sku-{i}", f"new {i} cat_{CATEGORIES[i % 4]}", end - 3600.0))
    return Interactions(
        pd.DataFrame(rows, columns=EVENT_COLUMNS), pd.DataFrame(catalog, columns=CATALOG_COLUMNS)
    )


def ranking_model(version: str = "v1", seed: int = 1, **metadata: Any) -> RankingModel:
    """A model fitted on `interactions(seed=seed)`, its `metadata` extended by `metadata`."""
    model = fit(
        interactions(seed=seed),
        TINY_SETTINGS,
        Repurchase.ALLOW,
        TierThresholds(2, 8),
        new_item_hours=48.0,
        version=version,
    )
    return model.with_blends(model.blends, **metadata)


def learned_ranker(seed: int = 1, rounds: int = 5) -> LearnedRanker:
    """A LightGBM LambdaRank model over `FEATURE_NAMES`, fitted in a blink on random
    candidates (30 groups of 10) whose first feature mostly decides the label."""
    import lightgbm as lgb

    from shopper.adapters.lightgbm_scorer import LightGBMScorer

    rng = np.random.default_rng(seed)
    features = rng.random((300, len(FEATURE_NAMES)))
    labels = (features[:, 0] + 0.3 * rng.random(300) > 0.8).astype(np.float64)
    train_set = lgb.Dataset(features, labels, group=[10] * 30, feature_name=list(FEATURE_NAMES))
    params = {"objective": "lambdarank", "min_data_in_leaf": 5, "num_threads": 1,
              "deterministic": True, "seed": seed, "verbose": -1}  # fmt: skip
    booster = lgb.train(params, train_set, num_boost_round=rounds)
    text = booster.model_to_string()
    metadata = {"moments": 30, "rounds": rounds, "validation_ndcg@20": 0.5,
                "importance": {FEATURE_NAMES[0]: 1.0}}  # fmt: skip
    return LearnedRanker(text, LightGBMScorer(text), FEATURE_NAMES, 40, metadata)


def ranked_model(version: str = "v1", seed: int = 1, **metadata: Any) -> RankingModel:
    """`ranking_model` with a learned ranker (`learned_ranker`), its metadata under
    `ranker` as the trainer records it."""
    ranker = learned_ranker(seed)
    model = ranking_model(version, seed, ranker=dict(ranker.metadata), **metadata)
    return replace(model, ranker=ranker)


def assert_same_model(got: RankingModel, want: RankingModel) -> None:
    """Every field and array equal (arrays by value, dtype and shape)."""
    assert got.version == want.version
    assert got.item_ids == want.item_ids
    assert_arrays(got.listed_at, want.listed_at)
    assert_arrays(got.has_behaviour, want.has_behaviour)
    assert list(got.popularity.segments) == list(want.popularity.segments)
    for name, vector in want.popularity.segments.items():
        assert_arrays(got.popularity.segments[name], vector)
    assert got.popularity.segment_weight == want.popularity.segment_weight
    assert_arrays(got.content.index, want.content.index)
    assert_arrays(got.content.weight, want.content.weight)
    assert list(got.neighbours) == list(want.neighbours)
    for name, neighbours in want.neighbours.items():
        assert_arrays(got.neighbours[name].index, neighbours.index)
        assert_arrays(got.neighbours[name].weight, neighbours.weight)
    assert (got.factors is None) == (want.factors is None)
    if got.factors is not None and want.factors is not None:
        assert_arrays(got.factors.items, want.factors.items)
        assert_arrays(got.factors.gram, want.factors.gram)
        assert (got.factors.regularization, got.factors.alpha) == (
            want.factors.regularization,
            want.factors.alpha,
        )
    assert got.blends == want.blends
    assert_same_histories(got, want)
    assert got.settings == want.settings
    assert got.trained_until == want.trained_until
    assert got.metadata == want.metadata
    assert got.index == want.index
    assert_same_ranker(got.ranker, want.ranker)


def assert_same_ranker(got: LearnedRanker | None, want: LearnedRanker | None) -> None:
    """The same model text, features, candidates and metadata, and the same scores."""
    if want is None or got is None:
        assert got is want
        return
    assert got.text == want.text
    assert got.feature_names == want.feature_names
    assert got.candidates == want.candidates
    assert got.metadata == want.metadata
    matrix = np.random.default_rng(0).random((50, len(FEATURE_NAMES)))
    assert np.array_equal(got.scorer.predict(matrix), want.scorer.predict(matrix))


def assert_same_histories(got: RankingModel, want: RankingModel) -> None:
    g, w = got.histories, want.histories
    assert g.subjects == w.subjects
    assert list(g.subjects) == list(w.subjects)
    for name in ("indptr", "items", "interest", "bought", "last_ts", "interactions"):
        assert_arrays(getattr(g, name), getattr(w, name))
    assert g.segments == w.segments


def assert_arrays(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")


# --- Two taste clusters: shoes and phones (tier, recommender and training tests) ----------

HOUR = 3_600.0
# Two clusters whose words never overlap, so content similarity stays inside a cluster.
SHOES = ("shoe-1", "shoe-2", "shoe-3", "shoe-4", "shoe-5")
PHONES = ("phone-1", "phone-2", "phone-3", "phone-4", "phone-5")
SHOE_WORDS = ("sprint", "trail", "court", "marathon", "canvas")
PHONE_WORDS = ("pixel", "nova", "zenith", "orbit", "flux")
SHOE_TEXT = "running shoe cat_footwear brand_stride"
PHONE_TEXT = "smart phone cat_electronics brand_volt"


def event(
    subject: str, item_id: str, ts: float, type: str = "view", country: str | None = None
) -> tuple[Any, ...]:
    """One interaction row as `Interactions.events` holds it."""
    kind = EventType(type)
    purchase = kind is EventType.PURCHASE
    return (subject, item_id, ts, kind.value, INTEREST_WEIGHT[kind], purchase, country, None, None)


def shop_data(rows: Iterable[tuple[Any, ...]], catalog: pd.DataFrame) -> Interactions:
    """Event rows (see `event`) and a catalog as the trainer reads them."""
    return Interactions(pd.DataFrame(list(rows), columns=EVENT_COLUMNS), catalog)


def catalog_of(items: Iterable[tuple[str, str, float]]) -> pd.DataFrame:
    """A catalog from (item_id, text, listed_at) rows."""
    return pd.DataFrame(list(items), columns=CATALOG_COLUMNS)


def two_taste_catalog(listed_at: float = T0 - 60 * DAY) -> pd.DataFrame:
    """Five shoes and five phones, all listed well before the shop's events."""
    shoes = [(i, f"{w} {SHOE_TEXT}", listed_at) for i, w in zip(SHOES, SHOE_WORDS, strict=True)]
    phones = [(i, f"{w} {PHONE_TEXT}", listed_at) for i, w in zip(PHONES, PHONE_WORDS, strict=True)]
    return catalog_of(shoes + phones)


def cluster_visits(
    prefix: str, items: Sequence[str], shoppers: int, country: str, days: int
) -> list[tuple[Any, ...]]:
    """`shoppers` (`u:<prefix>00`...) who each visit twice, half the span apart, touching
    only `items`. First visit: view `items[0]` (the cluster's favourite) and item a, cart
    and buy a. Second visit: view and buy item b (never a). Six interactions each."""
    rows = []
    half = days // 2
    for n in range(shoppers):
        subject = f"u:{prefix}{n:02d}"
        first = T0 + (n * half // shoppers) * DAY + (n % 12) * HOUR
        second = first + half * DAY
        a, b = items[1 + n % 4], items[1 + (n + 1) % 4]
        rows += [
            event(subject, items[0], first, "view", country),
            event(subject, a, first + 60, "view", country),
            event(subject, a, first + 120, "add_to_cart", country),
            event(subject, a, first + 180, "purchase", country),
            event(subject, b, second, "view", country),
            event(subject, b, second + 60, "purchase", country),
        ]
    return rows


def two_taste_shop(
    phone_shoppers: int = 30,
    shoe_shoppers: int = 12,
    days: int = 20,
    extra: Iterable[tuple[Any, ...]] = (),
    catalog: pd.DataFrame | None = None,
) -> Interactions:
    """A shop where phones are globally popular (more shoppers, country `US`) and shoes are
    what country `DE` buys; shoppers co-view and co-buy only inside their cluster. `extra`
    event rows are added (see `event`)."""
    rows = cluster_visits("p", PHONES, phone_shoppers, "US", days)
    rows += cluster_visits("s", SHOES, shoe_shoppers, "DE", days)
    rows += list(extra)
    rows.sort(key=lambda r: r[2])
    return shop_data(rows, two_taste_catalog() if catalog is None else catalog)


def no_events() -> pd.DataFrame:
    """An empty events table with the trainer's columns (a catalog-only shop)."""
    return pd.DataFrame(
        {c: pd.Series(dtype=np.float64 if c == "ts" else object) for c in EVENT_COLUMNS}
    )
