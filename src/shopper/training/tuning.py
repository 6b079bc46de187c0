"""Automatic tuning on a validation window carved from the training data.

The last `validation_days` of the training events are held out; models are fitted on
what comes before and every setting is chosen by recall@K of the served lists
(`evaluation.served`) for the shoppers of that window: first each model's own settings,
then each tier's blend by coordinate ascent. The test window of `shopper evaluate` is
never seen here. See docs/evaluation.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from shopper.domain.model import COLLABORATIVE, Blend, RankingModel, Repurchase
from shopper.domain.recommender import (
    blend_scores,
    build_profile,
    component_scores,
    top_k,
    young_items,
)
from shopper.domain.tier import DEFAULT_THRESHOLDS, LEAD_MODEL, Tier, TierThresholds, tier_of
from shopper.training.data import Interactions
from shopper.training.evaluation import Target, measure, served, targets, time_split
from shopper.training.fit import DEFAULT_BLENDS, DEFAULT_SETTINGS, FitSettings, Progress, fit

WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
ASCENT_ROUNDS = 2
MIN_RELATIVE_GAIN = 0.01  # a step of the ascent must gain this much
SIGNIFICANCE = 2.0  # standard errors the blend must beat the best single model by (paired)
MIN_BLEND_SHOPPERS = 300  # a tier with fewer in the validation window borrows the one before


@dataclass
class Tuned:
    settings: FitSettings
    blends: dict[Tier, Blend]
    validation: dict[str, Any] = field(default_factory=dict)  # recall per choice
    seconds: float = 0.0


def validation_days(data: Interactions, wanted: float = 30.0) -> float:
    """The validation window: `wanted` days, at most the time the data's last quarter of
    events spans (a quarter of the span where events come evenly; less where they crowd
    at the end, so the part before keeps three quarters of them)."""
    if data.events.empty:
        return 1e-3
    _, end = data.span
    quarter = (end - float(np.quantile(data.events.ts.to_numpy(), 0.75))) / 86_400.0
    return max(min(wanted, quarter), 1e-3)


def tune(
    data: Interactions,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    base: FitSettings = DEFAULT_SETTINGS,
    days: float | None = None,
    k: int = 20,
    progress: Progress | None = None,
) -> Tuned:
    """Settings and blends for `data`, chosen on its own last `days` (see module doc)."""
    started = time.perf_counter()
    step = progress or (lambda _: None)
    days = validation_days(data, days or 30.0)
    fit_part, window, _ = time_split(data, days)
    tests = targets(fit_part, window, repurchase)
    if not tests:
        return Tuned(base, {t: Blend(dict(w)) for t, w in DEFAULT_BLENDS.items()})
    trained = _subjects(fit_part)
    known = [t for t in tests if t.subject in trained]
    report: dict[str, Any] = {"validation_shoppers": len(tests), "with_history": len(known)}
    step("tuning: fit")
    model = fit(fit_part, base, repurchase, thresholds)
    settings = base

    def recall(m: RankingModel, weights: Mapping[str, float], who: Sequence[Target]) -> float:
        return float(measure(m, who, k, served(Blend(dict(weights))))["overall"]["recall"])

    def choose(name: str, options: Sequence[Any], score: Callable[[Any], float]) -> Any:
        results = {repr(o): score(o) for o in options}
        best = max(options, key=lambda o: results[repr(o)])
        report[name] = {"tried": results, "chosen": repr(best)}
        return best

    if known and "ease" in model.neighbours:
        step("tuning: ease")
        lam = choose(
            "ease_lambda",
            [settings.ease_lambda / 3, settings.ease_lambda, settings.ease_lambda * 3],
            lambda v: recall(
                _refit(fit_part, replace(settings, ease_lambda=v), "ease", model, repurchase),
                {"ease": 1.0},
                known,
            ),
        )
        settings = replace(settings, ease_lambda=lam)
        model = _refit(fit_part, settings, "ease", model, repurchase)
    if known:
        step("tuning: als")
        grid = [(64, 0.05, 10.0), (128, 0.1, 20.0), (32, 0.05, 5.0), (64, 0.5, 40.0)]
        f, reg, alpha = choose(
            "als",
            grid,
            lambda g: recall(
                _refit(fit_part, _als(settings, g), "als", model, repurchase), {"als": 1.0}, known
            ),
        )
        settings = _als(settings, (f, reg, alpha))
        model = _refit(fit_part, settings, "als", model, repurchase)
        step("tuning: history decay")
        lead = "ease" if "ease" in model.neighbours else "itemknn"
        hl = choose(
            "interest_half_life_days",
            [7.0, 30.0, 90.0, 365.0],
            lambda d: recall(_with(model, interest_half_life_s=d * 86_400), {lead: 1.0}, known),
        )
        settings = replace(settings, interest_half_life_days=hl)
        model = _with(model, interest_half_life_s=hl * 86_400)
        if repurchase is Repurchase.ALLOW:
            own = choose(
                "own_half_life_days",
                [3.0, 14.0, 60.0, 365.0],
                lambda d: recall(_with(model, own_half_life_s=d * 86_400), {"own": 1.0}, known),
            )
            settings = replace(settings, own_half_life_days=own)
            model = _with(model, own_half_life_s=own * 86_400)
    step("tuning: popularity")
    pop_hl = choose(
        "popularity_half_life_days",
        [3.0, 14.0, 60.0],
        lambda d: recall(
            _refit(
                fit_part,
                replace(settings, popularity_half_life_days=d),
                "popularity",
                model,
                repurchase,
            ),
            {"popularity": 1.0},
            tests,
        ),
    )
    settings = replace(settings, popularity_half_life_days=pop_hl)
    model = _refit(fit_part, settings, "popularity", model, repurchase)
    seg = choose(
        "segment_weight",
        [0.0, 0.5, 1.0, 2.0],
        lambda w: recall(_segment_weight(model, w), {"popularity": 1.0}, tests),
    )
    settings = replace(settings, segment_weight=seg)
    model = _segment_weight(model, seg)
    step("tuning: blends")
    latest = [(model, tests)]
    earlier: list[tuple[RankingModel, list[Target]]] | None = None
    blends = {}
    for tier in Tier:
        who = [(m, [t for t in ts if _tier(m, t) is tier]) for m, ts in latest]
        if len(who[0][1]) < MIN_BLEND_SHOPPERS and len(_components(model, tier)) > 1:
            # A small tier overfits one window: the window before it joins, with models
            # fitted on what precedes it (fitted once, for every small tier).
            if earlier is None:
                earlier = _earlier_round(fit_part, days, settings,
                                         repurchase, thresholds)  # fmt: skip
            who += [(m, [t for t in ts if _tier(m, t) is tier]) for m, ts in earlier]
        blends[tier], report[f"blend {tier.value}"] = tune_blend(who, tier, k)
    return Tuned(settings, blends, report, time.perf_counter() - started)


def earns_its_place(trial: np.ndarray, current: np.ndarray) -> bool:
    """Whether `trial` gains recall over `current` by more than `SIGNIFICANCE` standard
    errors of the per-shopper differences (a paired test: both lists are for the same
    shoppers). On a few dozen shoppers a small gain is noise."""
    diff = trial - current
    if len(diff) < 2 or diff.mean() <= 0:
        return False
    se = float(diff.std(ddof=1)) / np.sqrt(len(diff))
    return bool(diff.mean() > SIGNIFICANCE * se)


def _earlier_round(
    fit_part: Interactions,
    days: float,
    settings: FitSettings,
    repurchase: Repurchase,
    thresholds: TierThresholds,
) -> list[tuple[RankingModel, list[Target]]]:
    earlier_part, window, _ = time_split(fit_part, days)
    tests = targets(earlier_part, window, repurchase)
    if not tests or earlier_part.events.empty:
        return []
    return [(fit(earlier_part, settings, repurchase, thresholds), tests)]


def tune_blend(
    rounds: Sequence[tuple[RankingModel, Sequence[Target]]], tier: Tier, k: int
) -> tuple[Blend, dict[str, Any]]:
    """Coordinate ascent over `WEIGHT_GRID` per component, from the best single one, on the
    shoppers of every (model, validation shoppers) round; the tier's lead model keeps a
    weight above 0."""
    names = _components(rounds[0][0], tier)
    shoppers = sum(len(ts) for _, ts in rounds)
    if not shoppers or len(names) == 1:
        lead = _lead_names(tier, names)[0]
        weights = {n: (1.0 if n == lead else 0.0) for n in names}
        return Blend(weights), {"validation_shoppers": shoppers, "weights": weights}
    cases = []
    for model, tests in rounds:
        now = model.trained_until
        young = young_items(model, now)
        for t in tests:
            profile = build_profile(model, t.subject, now, segments=t.segments)
            comps = component_scores(model, profile, names)
            cases.append((model, young, comps, profile.hidden, t.relevant))

    def recalls(weights: Mapping[str, float]) -> np.ndarray:
        blend = Blend(dict(weights))
        out = np.empty(len(cases))
        for n, (model, young, comps, hidden, relevant) in enumerate(cases):
            ranked = top_k(model, blend_scores(comps, blend, young), k, hidden)
            out[n] = sum(1 for s in ranked if s.item_id in relevant) / len(relevant)
        return out

    singles = {n: recalls({n: 1.0}) for n in names}
    # From the best single model of the tier, its lead model on a tie: the one the data
    # supports best (on UCI collaborative filtering beats content after one purchase).
    # Every list records which model leads it.
    leads = _lead_names(tier, names)
    start = max(names, key=lambda n: (float(singles[n].mean()), n in leads))
    weights = {n: (1.0 if n == start else 0.0) for n in names}
    start_weights = weights
    base = current = recalls(weights)
    for _ in range(ASCENT_ROUNDS):
        for name in names:
            for value in WEIGHT_GRID:
                trial = {**weights, name: value}
                if not any(w > 0 for w in trial.values()) or trial == weights:
                    continue
                result = recalls(trial)
                if result.mean() > current.mean() * (1 + MIN_RELATIVE_GAIN) + 1e-9:
                    current, weights = result, trial
    if not earns_its_place(current, base):
        # The blend found is not clearly better than the best single model on these
        # shoppers: serve that model (a small tier's blend mostly fits noise).
        weights, current = start_weights, base
    best = float(current.mean())
    return Blend(weights), {
        "validation_shoppers": shoppers,
        "single_models": {n: round(float(v.mean()), 4) for n, v in singles.items()},
        "weights": weights,
        "recall": round(best, 4),
    }


def _components(model: RankingModel, tier: Tier) -> list[str]:
    if tier is Tier.ANONYMOUS:
        return ["popularity"]
    names = ["content", "popularity", *sorted(model.neighbours)]
    if model.factors is not None:
        names.append("als")
    if model.settings.repurchase is Repurchase.ALLOW:
        names.append("own")
    return names


def _lead_names(tier: Tier, names: Sequence[str]) -> list[str]:
    lead = LEAD_MODEL[tier]
    wanted = COLLABORATIVE if lead == "collaborative" else (lead,)
    return [n for n in names if n in wanted] or list(names)


def _tier(model: RankingModel, target: Target) -> Tier:
    h = model.histories
    i = h.subjects.get(target.subject)
    count = int(h.interactions[i]) if i is not None else 0
    return tier_of(count, model.settings.thresholds)


def _subjects(data: Interactions) -> set[str]:
    return set(data.events.subject.unique())


def _refit(
    data: Interactions, settings: FitSettings, part: str, model: RankingModel, mode: Repurchase
) -> RankingModel:
    fresh = fit(data, settings, mode, model.settings.thresholds, only=frozenset({part}))
    if part == "ease":
        return replace(model, neighbours={**model.neighbours, "ease": fresh.neighbours["ease"]})
    if part == "als":
        return replace(model, factors=fresh.factors)
    return replace(model, popularity=fresh.popularity)


def _als(settings: FitSettings, grid: tuple[int, float, float]) -> FitSettings:
    f, reg, alpha = grid
    return replace(settings, als_factors=f, als_regularization=reg, als_alpha=alpha)


def _with(model: RankingModel, **changes: Any) -> RankingModel:
    return replace(model, settings=replace(model.settings, **changes))


def _segment_weight(model: RankingModel, weight: float) -> RankingModel:
    return replace(model, popularity=replace(model.popularity, segment_weight=weight))
