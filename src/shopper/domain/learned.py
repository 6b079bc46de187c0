"""The learned ranker: a shopper's candidates (the tiered models' top items) re-ranked by
a model fitted on what shoppers did next, from what the models scored and what the
feature store says of the shopper, their session and each item.

One feature vector per candidate, built here and only here: the trainer builds it from
the offline store's point-in-time rows, the processor from the online rows. Its first
part comes from the ranking model (`MODEL_FEATURES`: scores per model, similarity to the
session's and cart's items as the feature store lists them, the tier), the rest is the
`shopper_item` view (`domain.features.pair`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shopper.domain.features.pair import (
    PAIR_FEATURES,
    ItemTable,
    item_table,
    pair_matrix,
    shopper_part,
)
from shopper.domain.features.spec import SESSION_CONTEXT, FeatureRow
from shopper.domain.model import COMPONENTS, IntArray, RankingModel, Vector
from shopper.domain.recommendation import ScoredItem
from shopper.domain.recommender import Profile, Ranked, score_catalog, similarity, top_positions
from shopper.domain.tier import Tier

Matrix = npt.NDArray[np.float64]

LEARNED = "learned"  # the `model` recorded on the lists the learned ranker ordered
DEFAULT_CANDIDATES = 100
TIER_NUMBER = {Tier.ANONYMOUS: 0.0, Tier.FEW: 1.0, Tier.MANY: 2.0}

MODEL_FEATURES = (
    "blend_score",  # the tier's blend, over the catalog's best
    "blend_rank",  # the candidate's place in the blend's order (0: first)
    *(f"{name}_score" for name in COMPONENTS),
    "sim_session_max",  # the most similar item of the session (as the feature store lists it)
    "sim_session_mean",
    "sim_last",  # similarity to the session's latest item
    "sim_cart",  # to the most similar item in the cart: a complement
    "tier",  # 0 anonymous, 1: 1-9 interactions, 2: 10+
)
FEATURE_NAMES: tuple[str, ...] = (*MODEL_FEATURES, *PAIR_FEATURES)


class Scorer(Protocol):
    """A fitted ranking function: one score per row of a feature matrix."""

    def predict(self, features: Matrix) -> Vector: ...


@dataclass(frozen=True, slots=True, eq=False)
class LearnedRanker:
    """A fitted ranker, its serialized form (`text`, for any model store to keep) and the
    features it reads, in column order."""

    text: str
    scorer: Scorer
    feature_names: tuple[str, ...] = FEATURE_NAMES
    candidates: int = DEFAULT_CANDIDATES
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreRows:
    """What the feature store holds for one shopper (rows by view name) and for items
    (`product_stats` rows by item id); missing rows are left out."""

    user: Mapping[str, FeatureRow]
    items: Mapping[str, FeatureRow]
    # The items' part of the pair features, computed once for all the shoppers who share
    # `items` (a micro-batch's; it holds every candidate of theirs). None: computed from
    # `items` for each shopper's candidates.
    table: ItemTable | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Candidates:
    """A shopper's candidates as the tiered models ranked them, with the scores behind."""

    tier: Tier
    positions: IntArray  # in the catalog, best first
    item_ids: list[str]
    components: Mapping[str, Vector]
    blended: Vector


def candidates_of(
    model: RankingModel,
    profile: Profile,
    n: int,
    now: float,
    unavailable: Collection[str] = (),
) -> Candidates:
    """The `n` best items of the shopper's tier blend: what the learned ranker orders."""
    scored = score_catalog(model, profile, now, names=COMPONENTS)
    positions, _ = top_positions(model, scored.blended, n, profile.hidden, unavailable)
    ids = model.item_ids
    item_ids = [ids[j] for j in positions.tolist()]
    return Candidates(scored.tier, positions, item_ids, scored.components, scored.blended)


def candidate_matrix(model: RankingModel, cands: Candidates, rows: StoreRows) -> Matrix:
    """One row of `FEATURE_NAMES` per candidate, in the candidates' order."""
    n = len(cands.positions)
    out = np.empty((n, len(FEATURE_NAMES)))
    if n == 0:
        return out
    top = float(cands.blended.max(initial=0.0)) or 1.0
    out[:, 0] = cands.blended[cands.positions] / top
    out[:, 1] = np.arange(n)
    for c, name in enumerate(COMPONENTS, start=2):
        out[:, c] = cands.components[name][cands.positions]
    c = 2 + len(COMPONENTS)
    out[:, c : c + 4] = _session_similarity(model, cands.positions, rows.user)
    out[:, c + 4] = TIER_NUMBER[cands.tier]
    ids = cands.item_ids
    table = rows.table or item_table(rows.items, ids)
    out[:, len(MODEL_FEATURES) :] = pair_matrix(shopper_part(rows.user), table, ids)
    return out


def order_by_ranker(ranker: LearnedRanker, cands: Candidates, matrix: Matrix, k: int) -> Ranked:
    """The candidates in the ranker's order, the best `k`; scores relative to the best."""
    if len(cands.positions) == 0:
        return Ranked([], cands.tier, LEARNED)
    return order_by_scores(cands, ranker.scorer.predict(matrix), k)


def order_by_scores(cands: Candidates, scores: Vector, k: int) -> Ranked:
    """`order_by_ranker` with the ranker's scores computed already (a whole micro-batch
    is scored at once)."""
    if len(cands.positions) == 0:
        return Ranked([], cands.tier, LEARNED)
    return Ranked(ordered(cands.item_ids, scores, k), cands.tier, LEARNED)


def ordered(item_ids: Sequence[str], scores: Vector, k: int) -> list[ScoredItem]:
    """Items by score (ties in the given order), the best `k`, each scored
    exp(score - best): positive, 1 for the best, as every list's scores are."""
    order = np.argsort(-scores, kind="stable")[:k]
    best = float(scores[order[0]])
    relative = np.maximum(np.round(np.exp(scores[order] - best), 6), 1e-6).tolist()
    return [ScoredItem(item_ids[j], v) for j, v in zip(order.tolist(), relative, strict=True)]


def _session_similarity(
    model: RankingModel, candidates: IntArray, user: Mapping[str, FeatureRow]
) -> Matrix:
    """Per candidate: max and mean similarity to the session's items, to its latest item,
    and max to the cart's items, the items as the feature store's `session_context` lists
    them (most recent first)."""
    session = user.get(SESSION_CONTEXT.name)
    recent = _positions(model, session.values.get("recent_item_ids") if session else ())
    cart = _positions(model, session.values.get("cart_item_ids") if session else ())
    out = np.zeros((len(candidates), 4))
    if not len(recent) and not len(cart):
        return out
    # One look-up for both: the cart's items are mostly the session's too.
    sources = np.unique(np.concatenate([recent, cart]))
    sims = similarity(model, sources, candidates)
    if len(recent):
        of_recent = sims[np.searchsorted(sources, recent)]
        out[:, 0] = of_recent.max(axis=0)
        out[:, 1] = of_recent.mean(axis=0)
        out[:, 2] = of_recent[0]
    if len(cart):
        out[:, 3] = sims[np.searchsorted(sources, cart)].max(axis=0)
    return out


def _positions(model: RankingModel, items: object) -> IntArray:
    ids = items if isinstance(items, tuple) else ()
    return np.array([model.index[i] for i in ids if i in model.index], dtype=np.int32)
