"""Offline evaluation: recall@K, NDCG@K, MRR and catalog coverage, overall and per tier,
of lists made by the serving code (`domain.recommender.recommend`), never a copy of it.

Protocol (docs/evaluation.md): events before the split train the models (which tune
themselves on a validation window carved from those events); a test shopper's relevant
items are what they bought in the test window (`exclude`: only items they had not
bought before; `allow`: repeats count too). Their history is what the model saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shopper.domain.learned import candidate_matrix, candidates_of, order_by_ranker
from shopper.domain.model import Blend, RankingModel, Repurchase
from shopper.domain.recommender import Profile, Ranked, build_profile, recommend
from shopper.domain.segment import hour_segment
from shopper.domain.tier import Tier
from shopper.ports.feature_store import FeatureStore
from shopper.training.data import Interactions
from shopper.training.learned_ranker import point_in_time

DAY_S = 86_400.0
MIN_TARGET_SHOPPERS = 20


@dataclass(frozen=True)
class Target:
    """One shopper to predict for: their relevant items and the context they came in."""

    subject: str
    relevant: frozenset[str]
    segments: tuple[str, ...] = ()


@dataclass
class Scores:
    """Sums of per-shopper metrics; `summary` turns them into means."""

    n: int = 0
    recall: float = 0.0
    ndcg: float = 0.0
    mrr: float = 0.0
    recall_sq: float = 0.0
    ndcg_sq: float = 0.0
    shown: set[str] = field(default_factory=set)

    def add(self, ranked: list[str], relevant: frozenset[str], k: int) -> tuple[float, float]:
        """Count one shopper in; returns their (recall, NDCG)."""
        hits = [i for i, item in enumerate(ranked[:k]) if item in relevant]
        recall = len(hits) / len(relevant)
        self.n += 1
        self.recall += recall
        self.recall_sq += recall * recall
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        ndcg = sum(1 / math.log2(i + 2) for i in hits) / ideal
        self.ndcg += ndcg
        self.ndcg_sq += ndcg * ndcg
        self.mrr += 1 / (hits[0] + 1) if hits else 0.0
        self.shown.update(ranked[:k])
        return recall, ndcg

    def summary(self, n_items: int) -> dict[str, float]:
        if self.n == 0:
            return {"users": 0, "recall": 0.0, "ndcg": 0.0, "mrr": 0.0, "coverage": 0.0}
        return {
            "users": self.n,
            "recall": round(self.recall / self.n, 4),
            "recall_se": round(_standard_error(self.recall, self.recall_sq, self.n), 4),
            "ndcg": round(self.ndcg / self.n, 4),
            "ndcg_se": round(_standard_error(self.ndcg, self.ndcg_sq, self.n), 4),
            "mrr": round(self.mrr / self.n, 4),
            "coverage": round(len(self.shown) / max(n_items, 1), 4),
        }


def _standard_error(total: float, squares: float, n: int) -> float:
    mean = total / n
    return math.sqrt(max(squares / n - mean * mean, 0.0) / n)


def target_types(window: pd.DataFrame) -> set[str]:
    """What counts as relevant: purchases when enough shoppers bought in the window, else
    carts and purchases, else every interaction (short logs of views)."""
    for types in ({"purchase"}, {"purchase", "add_to_cart"}):
        if window[window.type.isin(types)].subject.nunique() >= MIN_TARGET_SHOPPERS:
            return types
    return set(window.type.unique())


def targets(train: Interactions, window: pd.DataFrame, repurchase: Repurchase) -> list[Target]:
    """Test shoppers with their relevant items (known catalog items only)."""
    types = target_types(window)
    hits = window[window.type.isin(types)]
    known = set(train.catalog.item_id) | set(train.events.item_id)
    bought_before = (
        train.events[train.events.purchase].groupby("subject").item_id.agg(set).to_dict()
    )
    first = window.sort_values("ts").groupby("subject").head(1).set_index("subject")
    out = []
    for subject, items in hits.groupby("subject").item_id:
        relevant = set(items) & known
        if repurchase is Repurchase.EXCLUDE:
            relevant -= bought_before.get(subject, set())
        if relevant:
            ctx = first.loc[subject] if subject in first.index else None
            segs = tuple(
                f"{dim}:{str(ctx[dim]).lower()}"
                for dim in ("country", "device", "referrer")
                if ctx is not None and isinstance(ctx[dim], str) and ctx[dim]
            ) + ((hour_segment(float(ctx["ts"])),) if ctx is not None else ())
            out.append(Target(str(subject), frozenset(relevant), segs))
    return sorted(out, key=lambda t: t.subject)


Recommender = Callable[[RankingModel, Target, int], Ranked]
Metrics = dict[str, dict[str, float]]
PerTarget = list[tuple[float, float]]  # each test shopper's (recall, NDCG), in order


def served(blend: Blend | None = None) -> Recommender:
    """Lists as the processor writes them (the tier's blend), or one `blend` alone."""

    def run(model: RankingModel, target: Target, k: int) -> Ranked:
        now = model.trained_until
        return recommend(model, target_profile(model, target, now), k, now, blend=blend)

    return run


def target_profile(model: RankingModel, target: Target, now: float) -> Profile:
    """A test shopper as the model knows them at the split, in the context they came in."""
    return build_profile(model, target.subject, now, segments=target.segments)


def learned_lists(
    model: RankingModel, tests: Sequence[Target], k: int, store: FeatureStore, at: float
) -> list[Ranked]:
    """The learned ranker's lists: the candidates of the served blend (the profile `served`
    builds) ordered from the feature store's rows as of `at` (the split), read for every
    test shopper at once."""
    ranker = model.ranker
    if ranker is None:
        raise ValueError(f"model {model.version} has no learned ranker")
    now = model.trained_until
    cands = [candidates_of(model, target_profile(model, t, now), ranker.candidates, now)
             for t in tests]  # fmt: skip
    rows = point_in_time(store, [(t.subject, at) for t in tests], [c.item_ids for c in cands])
    return [
        order_by_ranker(ranker, c, candidate_matrix(model, c, r), k)
        for c, r in zip(cands, rows, strict=True)
    ]


def measure(
    model: RankingModel, tests: Iterable[Target], k: int, recommender: Recommender
) -> Metrics:
    """Metrics overall and per tier (the tier the shopper is in when the list is made)."""
    shoppers = list(tests)
    return measure_lists(model, shoppers, [recommender(model, t, k) for t in shoppers], k)[0]


def measure_lists(
    model: RankingModel, tests: Sequence[Target], lists: Iterable[Ranked], k: int
) -> tuple[Metrics, PerTarget]:
    """`measure` of lists already made (one per test shopper, in order), with each
    shopper's (recall, NDCG) for paired differences."""
    overall = Scores()
    tiers = {t: Scores() for t in Tier}
    per_target: PerTarget = []
    for target, ranked in zip(tests, lists, strict=True):
        ids = [s.item_id for s in ranked.items]
        per_target.append(overall.add(ids, target.relevant, k))
        tiers[ranked.tier].add(ids, target.relevant, k)
    n = model.n_items
    metrics = {"overall": overall.summary(n)} | {t.value: s.summary(n) for t, s in tiers.items()}
    return metrics, per_target


def paired_difference(better: PerTarget, base: PerTarget) -> dict[str, float]:
    """Mean per-case difference of recall and NDCG (`better` minus `base`) with its
    standard error: the cases are the same, so the pairs' spread is what counts."""
    diff = np.array(better, dtype=np.float64).reshape(-1, 2) - np.array(
        base, dtype=np.float64
    ).reshape(-1, 2)
    n = max(len(diff), 1)
    out: dict[str, float] = {}
    for col, name in enumerate(("recall", "ndcg")):
        d = diff[:, col] if len(diff) else np.zeros(1)
        out[name] = round(float(d.mean()), 4)
        out[f"{name}_se"] = round(float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0, 4)
    return out


SINGLE_MODELS: Mapping[str, Mapping[str, float]] = {
    "popularity": {"popularity": 1.0},
    "content": {"content": 1.0},
    "ease": {"ease": 1.0},
    "itemknn": {"itemknn": 1.0},
    "als": {"als": 1.0},
    "own_history": {"own": 1.0},
}


def time_split(data: Interactions, days: float) -> tuple[Interactions, pd.DataFrame, float]:
    """Train on everything before the last `days`, test on those days."""
    _, end = data.span
    cut = end - days * DAY_S + 1e-6
    return data.before(cut), data.between(cut, end + 1), cut


def random_split(
    data: Interactions, share: float = 0.2, seed: int = 0
) -> tuple[Interactions, pd.DataFrame]:
    """A random `share` of events held out (ignores time: optimistic, for comparison)."""
    rng = np.random.default_rng(seed)
    held = rng.random(len(data.events)) < share
    train = Interactions(data.events[~held], data.catalog)
    return train, data.events[held]
