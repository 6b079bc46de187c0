"""Fitting the learned ranker: shopper moments, their candidates, point-in-time features
from the feature store, labels from what the shopper did next; LightGBM LambdaRank with a
time-based validation split and early stopping.

The moments are those of the window the tuning validates on (the last `validation_days`
of the training data). Their candidates and model scores come from models fitted, with
the tuned settings, on the data before that window, so no score knows the answer; their
store features are point-in-time (`FeatureStore.historical`) as of each moment's `at`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shopper.domain.features.spec import PRODUCT_STATS, USER_VIEWS, FeatureRow
from shopper.domain.learned import (
    DEFAULT_CANDIDATES,
    FEATURE_NAMES,
    Candidates,
    LearnedRanker,
    Matrix,
    StoreRows,
    candidate_matrix,
    candidates_of,
)
from shopper.domain.model import RankingModel
from shopper.errors import ShopperError
from shopper.ports.feature_store import FeatureStore
from shopper.training.moments import Case, case_profile

Progress = Callable[[str], None]
MIN_MOMENTS = 20


class TooFewMoments(ShopperError, ValueError):
    """Too few moments to fit the ranker on: the models are trained without it."""


@dataclass(frozen=True, slots=True)
class RankerSettings:
    candidates: int = DEFAULT_CANDIDATES
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    validation_share: float = 0.2  # the latest moments, for early stopping
    max_moments: int = 20_000  # the latest, if there are more
    seed: int = 7


@dataclass(frozen=True, slots=True, eq=False)
class Scored:
    """The moments' candidates and features, in the moments' order."""

    cases: list[Case]
    candidates: list[Candidates]
    matrices: list[Matrix]


def score_moments(
    model: RankingModel, cases: Sequence[Case], store: FeatureStore, n: int
) -> Scored:
    """Each moment's candidates (the served blend with the revealed part of the visit as
    live events) and their feature matrices from the store's point-in-time rows."""
    cands = [candidates_of(model, case_profile(model, c, c.revealed), n, c.ts) for c in cases]
    rows = point_in_time(store, [(c.subject, c.at) for c in cases], [x.item_ids for x in cands])
    matrices = [candidate_matrix(model, x, r) for x, r in zip(cands, rows, strict=True)]
    return Scored(list(cases), cands, matrices)


def point_in_time(
    store: FeatureStore, shoppers: Sequence[tuple[str, float]], items: Sequence[Sequence[str]]
) -> list[StoreRows]:
    """The store's rows as of each (shopper, time), for the shopper and for the items
    listed beside it: one `historical` call per view for all of them."""
    user_rows: list[dict[str, FeatureRow]] = [{} for _ in shoppers]
    for view in USER_VIEWS:
        for found, row in zip(user_rows, store.historical(view.name, shoppers), strict=True):
            if row is not None:
                found[view.name] = row
    requests = [(item, ts) for (_, ts), ids in zip(shoppers, items, strict=True) for item in ids]
    answers = iter(store.historical(PRODUCT_STATS.name, requests))
    out = []
    for user, ids in zip(user_rows, items, strict=True):
        item_rows = {item: row for item in ids if (row := next(answers)) is not None}
        out.append(StoreRows(user, item_rows))
    return out


def fit_ranker(
    scored: Scored, settings: RankerSettings = RankerSettings(), threads: int = 2
) -> LearnedRanker:
    """LambdaRank on the moments with at least one candidate the shopper went on to;
    the latest `validation_share` of them (by time) stop the boosting when NDCG@20 no
    longer improves."""
    import lightgbm as lgb

    from shopper.adapters.lightgbm_scorer import LightGBMScorer

    started = time.perf_counter()
    groups = [
        (case.ts, m, np.array([i in case.later for i in x.item_ids], dtype=np.float64))
        for case, x, m in zip(scored.cases, scored.candidates, scored.matrices, strict=True)
    ]
    groups = sorted((g for g in groups if len(g[2]) > 1 and g[2].any()), key=lambda g: g[0])
    groups = groups[-settings.max_moments :]
    if len(groups) < MIN_MOMENTS:
        raise TooFewMoments(
            f"{len(groups)} moments with an answer among the candidates: too few "
            f"(at least {MIN_MOMENTS})"
        )
    cut = len(groups) - max(int(len(groups) * settings.validation_share), 1)

    def dataset(part: list[tuple[float, Matrix, np.ndarray]], **kw: Any) -> Any:
        return lgb.Dataset(
            np.vstack([m for _, m, _ in part]),
            np.concatenate([y for _, _, y in part]),
            group=[len(y) for _, _, y in part],
            feature_name=list(FEATURE_NAMES),
            **kw,
        )

    train_set = dataset(groups[:cut])
    valid_set = dataset(groups[cut:], reference=train_set)
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [20],
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": settings.seed,
        "deterministic": True,
        "num_threads": threads,
        "verbose": -1,
    }
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=settings.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    gain = booster.feature_importance("gain", iteration=best)
    total = float(gain.sum()) or 1.0
    importance = {
        name: round(float(g) / total, 4)
        for name, g in sorted(zip(FEATURE_NAMES, gain, strict=True), key=lambda kv: -kv[1])
    }
    text = booster.model_to_string(num_iteration=best)
    valid_ndcg = booster.best_score.get("valid_0", {}).get("ndcg@20")
    metadata = {
        "moments": len(groups),
        "train_moments": cut,
        "validation_moments": len(groups) - cut,
        "candidate_rows": int(sum(len(y) for _, _, y in groups)),
        "rounds": best,
        "validation_ndcg@20": None if valid_ndcg is None else round(float(valid_ndcg), 4),
        "importance": importance,
        "settings": asdict(settings),
        "fit_seconds": round(time.perf_counter() - started, 2),
    }
    return LearnedRanker(text, LightGBMScorer(text), FEATURE_NAMES, settings.candidates, metadata)
