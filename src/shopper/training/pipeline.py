"""Train (tune, then fit on everything) and evaluate: what `shopper train` and
`shopper evaluate` run."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shopper.domain.model import Blend, RankingModel, Repurchase
from shopper.domain.tier import DEFAULT_THRESHOLDS, TierThresholds
from shopper.training.data import Interactions
from shopper.training.evaluation import (
    SINGLE_MODELS,
    measure,
    random_split,
    served,
    targets,
    time_split,
)
from shopper.training.fit import FitSettings, Progress, fit
from shopper.training.tuning import tune


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
) -> RankingModel:
    """Tune on a validation window of `data` (unless `settings` are given: a retrain with
    known settings), then fit every model on all of `data`."""
    started = time.perf_counter()
    report: dict[str, Any] = {}
    blends = None
    if settings is None:
        tuned = tune(data, repurchase, thresholds, days=validation_days, k=k, progress=progress)
        settings, blends, report = tuned.settings, tuned.blends, tuned.validation
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
    return model.with_blends(blends or model.blends, **meta)


def retrain(
    data: Interactions, previous: RankingModel, progress: Progress | None = None
) -> RankingModel:
    """Fit with the settings and blends `previous` was tuned to (no tuning step)."""
    settings = FitSettings(**previous.metadata["settings"])
    s = previous.settings
    model = train(data, s.repurchase, s.thresholds, s.new_item_hours, settings, progress=progress)
    return replace(model, blends=previous.blends, metadata={
        **model.metadata, "validation": previous.metadata.get("validation", {}),
        "tuned_in": previous.version})  # fmt: skip


def evaluate(
    data: Interactions,
    split: str = "time",
    test_days: float = 30.0,
    k: int = 20,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train on the data before the test window (tuning on the `test_days` before that),
    then measure every single model and the tiered system on the test window."""
    if split == "time":
        train_part, window, _ = time_split(data, test_days)
    else:
        train_part, window = random_split(data)
    model = train(train_part, repurchase, thresholds, validation_days=test_days, k=k,
                  progress=progress)  # fmt: skip
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
    models["shopper"] = _tiers(measure(model, tests, k, served()))
    return {
        "k": k,
        "split": split,
        "repurchase": repurchase.value,
        "test_shoppers": len(tests),
        "models": models,
        "blends": {t.value: dict(b.weights) for t, b in model.blends.items()},
        "validation": model.metadata.get("validation", {}),
        "train_seconds": model.metadata.get("train_seconds"),
    }


def _tiers(result: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"overall": result.pop("overall"), "tiers": result}
