"""Train (tune, then fit on everything) and evaluate: what `shopper train` and
`shopper evaluate` run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shopper.domain.learned import LEARNED, LearnedRanker
from shopper.domain.model import Blend, RankingModel, Repurchase
from shopper.domain.tier import DEFAULT_THRESHOLDS, Tier, TierThresholds
from shopper.ports.feature_store import FeatureStore
from shopper.training.data import Interactions
from shopper.training.evaluation import (
    SINGLE_MODELS,
    PerTarget,
    Target,
    learned_lists,
    measure,
    measure_lists,
    paired_difference,
    random_split,
    served,
    targets,
    time_split,
)
from shopper.training.fit import FitSettings, Progress, fit
from shopper.training.learned_ranker import (
    RankerSettings,
    TooFewMoments,
    fit_ranker,
    score_moments,
)
from shopper.training.moments import moments
from shopper.training.tuning import tune, validation_days


def new_version(now: float | None = None) -> str:
    """Sortable, unique: `20261130T061502Z-3f2a`."""
    stamp = datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:4]}"


def train(
    data: Interactions,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    new_item_hours: float = 72.0,
    settings: FitSettings | None = None,
    validation_days: float | None = None,
    k: int = 20,
    progress: Progress | None = None,
    version: str | None = None,
    features: FeatureStore | None = None,
    ranker_settings: RankerSettings | None = None,
) -> RankingModel:
    """Tune on a validation window of `data` (unless `settings` are given: a retrain with
    known settings), then fit every model on all of `data`. With `features` (a feature
    store whose offline rows cover `data`'s events), the learned ranker is fitted on the
    validation window's moments too."""
    started = time.perf_counter()
    report: dict[str, Any] = {}
    blends = None
    if settings is None:
        tuned = tune(data, repurchase, thresholds, days=validation_days, k=k, progress=progress)
        settings, blends, report = tuned.settings, tuned.blends, tuned.validation
    ranker, skipped = None, None
    if features is not None:
        days = validation_days_of(data, validation_days)
        try:
            ranker = train_ranker(
                data, settings, blends, repurchase, thresholds, new_item_hours, days, features,
                ranker_settings or RankerSettings(), progress,
            )  # fmt: skip
        except TooFewMoments as exc:  # the models stand on their own without it
            skipped = str(exc)
    if progress:
        progress("fit")
    model = fit(data, settings, repurchase, thresholds, new_item_hours, version or new_version(),
                progress)  # fmt: skip
    start, end = data.span
    meta = {
        "version": model.version,
        "trained_at": time.time(),
        "data_range": [start, end],
        "events": len(data.events),
        "shoppers": len(model.histories.subjects),
        "items": model.n_items,
        "repurchase": repurchase.value,
        "settings": settings.as_dict(),
        "validation": report,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    if ranker is not None:
        meta["ranker"] = dict(ranker.metadata)
    if skipped is not None:
        meta["ranker_skipped"] = skipped
    return replace(model.with_blends(blends or model.blends, **meta), ranker=ranker)


def validation_days_of(data: Interactions, wanted: float | None) -> float:
    return validation_days(data, wanted or 30.0)


def train_ranker(
    data: Interactions,
    settings: FitSettings,
    blends: Mapping[Tier, Blend] | None,
    repurchase: Repurchase,
    thresholds: TierThresholds,
    new_item_hours: float,
    days: float,
    features: FeatureStore,
    ranker_settings: RankerSettings,
    progress: Progress | None = None,
) -> LearnedRanker:
    """The learned ranker, fitted on the moments of the last `days` of `data`, ranking
    the candidates of models fitted (with `settings` and `blends`) before those days."""
    step = progress or (lambda _: None)
    if "session" not in data.events.columns:
        raise TooFewMoments("no visits to cut into moments: the events carry no session")
    before, window, _ = time_split(data, days)
    step("ranker: fit")
    early = fit(before, settings, repurchase, thresholds, new_item_hours, "ranker-window")
    if blends:
        early = early.with_blends(blends)
    step("ranker: features")
    cases = list(moments(window, starts=True))
    scored = score_moments(early, cases, features, ranker_settings.candidates)
    step("ranker: boost")
    return fit_ranker(scored, ranker_settings)


def retrain(
    data: Interactions, previous: RankingModel, progress: Progress | None = None
) -> RankingModel:
    """Fit with the settings and blends `previous` was tuned to (no tuning step)."""
    settings = FitSettings(**previous.metadata["settings"])
    s = previous.settings
    model = train(data, s.repurchase, s.thresholds, s.new_item_hours, settings, progress=progress)
    # The learned ranker reads the models' scores scaled per shopper: it carries over.
    ranker = previous.metadata.get("ranker")
    return replace(model, blends=previous.blends, ranker=previous.ranker, metadata={
        **model.metadata, "validation": previous.metadata.get("validation", {}),
        "tuned_in": previous.version, **({"ranker": ranker} if ranker else {})})  # fmt: skip


def evaluate(
    data: Interactions,
    split: str = "time",
    test_days: float = 30.0,
    k: int = 20,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    progress: Progress | None = None,
    features: FeatureStore | None = None,
    ranker_settings: RankerSettings | None = None,
) -> dict[str, Any]:
    """Train on the data before the test window (tuning on the `test_days` before that),
    then measure every single model and the tiered system on the test window. With
    `features` (a feature store whose offline rows cover `data`'s events) and the time
    split, the learned ranker too (`learned`, beside `shopper`: the same candidates)."""
    cut = None
    if split == "time":
        train_part, window, cut = time_split(data, test_days)
    else:
        train_part, window = random_split(data)
    # Features as of a split need a split in time: a random one has none.
    store = features if cut is not None else None
    model = train(train_part, repurchase, thresholds, validation_days=test_days, k=k,
                  progress=progress, features=store, ranker_settings=ranker_settings)  # fmt: skip
    tests = targets(train_part, window, repurchase)
    if progress:
        progress("evaluate")
    models: dict[str, Any] = {}
    for name, weights in SINGLE_MODELS.items():
        if name == "own_history" and repurchase is Repurchase.EXCLUDE:
            continue
        if name in ("ease", "itemknn") and name not in model.neighbours:
            continue
        models[name] = _tiers(measure(model, tests, k, served(Blend(dict(weights)))))
    shopper, per_shopper = measure_lists(model, tests, [served()(model, t, k) for t in tests], k)
    models["shopper"] = _tiers(shopper)
    report: dict[str, Any] = {
        "k": k,
        "split": split,
        "repurchase": repurchase.value,
        "test_shoppers": len(tests),
        "models": models,
        "blends": {t.value: dict(b.weights) for t, b in model.blends.items()},
        "validation": model.metadata.get("validation", {}),
        "train_seconds": model.metadata.get("train_seconds"),
    }
    if features is not None:
        report["ranker"] = _ranker_report(model, split)
    if store is not None and cut is not None and model.ranker is not None:
        if progress:
            progress("evaluate: features")
        models[LEARNED], difference = _learned(model, tests, k, store, cut, per_shopper)
        report["differences"] = {f"{LEARNED} - shopper": difference}
    return report


def _learned(
    model: RankingModel,
    tests: list[Target],
    k: int,
    store: FeatureStore,
    cut: float,
    per_shopper: PerTarget,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The learned ranker's metrics, and its paired difference with the tiered system's
    (`per_shopper`): the same shoppers, so the differences' spread is what counts."""
    lists = learned_lists(model, tests, k, store, cut)
    learned, per_learned = measure_lists(model, tests, lists, k)
    return _tiers(learned), paired_difference(per_learned, per_shopper)


def _ranker_report(model: RankingModel, split: str) -> dict[str, Any]:
    """The ranker's metadata, or why there is none."""
    if model.ranker is not None:
        return dict(model.ranker.metadata)
    if split != "time":
        return {"skipped": "the learned ranker is measured on the time split only"}
    return {"skipped": model.metadata.get("ranker_skipped", "not fitted")}


def _tiers(result: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"overall": result.pop("overall"), "tiers": result}
