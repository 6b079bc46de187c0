"""Session-aware evaluation (`shopper evaluate --protocol session`): does what a shopper does
in this visit make the list better, and does the learned ranker order it better than the
hand-weighted blend? docs/evaluation.md.

The models (and, with a feature store, the learned ranker) are trained and tuned on
everything before the test window; the test window's moments (`training.moments`) are
ranked three ways by the serving code:

- `no-session`: the catalog, for the shopper as they were before the visit (their trained
  history and their earlier visits in the test window);
- `session`: the same, with the revealed part of the visit as live events: the tier
  blend's order of its candidates, the hand-weighted session re-rank;
- `learned`: those candidates (the blend's top `candidates`) ordered by the learned ranker
  from the feature store's point-in-time rows as of the moment.

Revealed items are never recommended back.
"""

from __future__ import annotations

from typing import Any

from shopper.domain.learned import LEARNED, order_by_ranker
from shopper.domain.model import RankingModel, Repurchase
from shopper.domain.recommender import recommend
from shopper.domain.tier import DEFAULT_THRESHOLDS, Tier, TierThresholds
from shopper.errors import ShopperError
from shopper.ports.feature_store import FeatureStore
from shopper.training.data import Interactions
from shopper.training.evaluation import Scores, paired_difference, time_split
from shopper.training.fit import Progress
from shopper.training.learned_ranker import RankerSettings, score_moments
from shopper.training.moments import Case, case_profile, moments
from shopper.training.tuning import validation_days

NO_SESSION = "no-session"
SESSION = "session"


def evaluate_sessions(
    data: Interactions,
    test_days: float = 30.0,
    k: int = 20,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    progress: Progress | None = None,
    features: FeatureStore | None = None,
    ranker_settings: RankerSettings | None = None,
) -> dict[str, Any]:
    """Every ranking over every test moment of the data's kind (basket or next item);
    `learned` only with a feature store."""
    from shopper.training.pipeline import train

    if "session" not in data.events.columns:
        raise ShopperError(
            "the session protocol needs visits: a data set folder (--dataset), whose events "
            "carry their invoice or session"
        )
    days = min(test_days, validation_days(data, test_days))
    train_part, window, _ = time_split(data, days)
    model = train(
        train_part, repurchase, thresholds, validation_days=days, k=k, progress=progress,
        features=features, ranker_settings=ranker_settings,
    )  # fmt: skip
    cases = list(moments(window))
    basket = bool(window.purchase.all())
    if progress:
        progress("evaluate")
    results = {name: Ranking() for name in (NO_SESSION, SESSION)}
    for case in cases:
        ranked = recommend(model, case_profile(model, case, ()), k, case.ts)
        results[NO_SESSION].add([s.item_id for s in ranked.items], case, ranked.tier, k)
    if model.ranker is None:
        for case in cases:
            ranked = recommend(model, case_profile(model, case, case.revealed), k, case.ts)
            results[SESSION].add([s.item_id for s in ranked.items], case, ranked.tier, k)
    else:
        assert features is not None
        results[LEARNED] = Ranking()
        if progress:
            progress("evaluate: features")
        scored = score_moments(model, cases, features, model.ranker.candidates)
        for case, cands, matrix in zip(cases, scored.candidates, scored.matrices, strict=True):
            tier = cands.tier
            results[SESSION].add(cands.item_ids[:k], case, tier, k)
            learned = order_by_ranker(model.ranker, cands, matrix, k)
            results[LEARNED].add([s.item_id for s in learned.items], case, tier, k)
    return _report(model, results, basket, repurchase, days, len(cases), k)


class Ranking:
    """One ranking's scores, per tier and overall, and per case (for paired differences)."""

    def __init__(self) -> None:
        self.tiers = {"overall": Scores()} | {t.value: Scores() for t in Tier}
        self.per_case: list[tuple[float, float]] = []  # (recall, NDCG)

    def add(self, ids: list[str], case: Case, tier: Tier, k: int) -> None:
        self.per_case.append(self.tiers["overall"].add(ids, case.relevant, k))
        self.tiers[tier.value].add(ids, case.relevant, k)


def _report(
    model: RankingModel,
    results: dict[str, Ranking],
    basket: bool,
    repurchase: Repurchase,
    days: float,
    cases: int,
    k: int,
) -> dict[str, Any]:
    n = model.n_items
    out: dict[str, Any] = {
        "k": k,
        "protocol": "session",
        "task": "basket completion" if basket else "next item",
        "repurchase": repurchase.value,
        "test_days": round(days, 4),
        "cases": cases,
        "models": {
            name: {
                "overall": r.tiers["overall"].summary(n),
                "tiers": {t.value: r.tiers[t.value].summary(n) for t in Tier},
            }
            for name, r in results.items()
        },
        # Each ranking against the one before it, case by case.
        "differences": {
            f"{better} - {base}": paired_difference(
                results[better].per_case, results[base].per_case
            )
            for base, better in ((NO_SESSION, SESSION), (SESSION, LEARNED))
            if better in results
        },
        "blends": {t.value: dict(b.weights) for t, b in model.blends.items()},
    }
    if model.ranker is not None:
        out["ranker"] = dict(model.ranker.metadata)
    elif "ranker_skipped" in model.metadata:
        out["ranker"] = {"skipped": model.metadata["ranker_skipped"]}
    return out
