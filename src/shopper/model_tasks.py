"""What `shopper train`, `shopper evaluate`, `shopper models` and `shopper export` run."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from shopper.config import Config
from shopper.domain.model import RankingModel, Repurchase
from shopper.domain.tier import TierThresholds
from shopper.errors import MissingExtra, ShopperError
from shopper.ports.feature_store import FeatureStore
from shopper.ports.model_store import ModelStore
from shopper.ranker_tasks import FeatureSource, ranker_features

STAGES = ("load", "tuning: fit", "tuning: ease", "tuning: als", "tuning: history decay",
          "tuning: popularity", "tuning: blends", "ranker: fit", "ranker: features",
          "ranker: boost", "fit", "popularity", "content", "ease",
          "itemknn", "als", "evaluate", "evaluate: features", "save")  # fmt: skip
SHOWN_IMPORTANCE = 10


def model_store(config: Config) -> ModelStore:
    from shopper.adapters.folder_model_store import FolderModelStore

    return FolderModelStore(config.models_folder)


def thresholds(config: Config) -> TierThresholds:
    try:
        return TierThresholds(config.tier_few_from, config.tier_many_from)
    except ValueError as exc:
        raise ShopperError(f"tier_few_from / tier_many_from: {exc}") from None


@contextmanager
def stages(show: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar over the training stages, on stderr (stdout stays for results)."""
    if not show:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<24}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task("load", total=len(STAGES))

        def step(name: str) -> None:
            done = STAGES.index(name) if name in STAGES else progress.tasks[0].completed
            progress.update(task, description=name, completed=done)

        yield step
        progress.update(task, description="done", completed=len(STAGES))


def training_data(
    config: Config,
    dataset: Path | None = None,
    events: Path | None = None,
    catalog: Path | None = None,
    users: Path | None = None,
) -> Any:
    """The data to train on: a shipped data set folder, canonical files, or the archive."""
    from shopper.training import data

    if dataset is not None:
        return data.from_dataset(dataset)
    if events is not None:
        return data.from_files(events, catalog, users)
    from shopper.feature_wiring import build_event_archive

    archived = list(build_event_archive(config).read())
    if not archived:
        raise ShopperError(
            f"no archived events under {config.data_dir}: run the processor with the feature "
            "store on (it archives every event), or pass --events FILE --catalog FILE, or "
            "--dataset FOLDER"
        )
    return data.from_events(archived)


def run_train(
    config: Config,
    interactions: Any,
    promote: bool,
    show: bool,
    retrain: bool = False,
    ranker: FeatureSource | None = None,
) -> dict[str, Any]:
    """Tune (unless `retrain`: the promoted model's settings), fit, save, maybe promote.
    With `ranker` (where the data came from), the learned ranker too, on a feature store
    backfilled from those events; a retrain keeps the promoted model's ranker instead."""
    from shopper.training.pipeline import retrain as refit
    from shopper.training.pipeline import train

    store = model_store(config)
    started = time.perf_counter()
    previous = store.load_promoted() if retrain else None
    if retrain and previous is None:
        raise ShopperError("--retrain needs a promoted model to take its settings from")
    with ExitStack() as stack:
        features, unavailable = None, None
        if ranker is not None and previous is None:
            features, unavailable = _open_features(stack, config, ranker, show, scratch=False)
        with stages(show) as step:
            if previous is not None:
                model = refit(interactions, previous, step)
            else:
                model = train(
                    interactions,
                    Repurchase(config.repurchase),
                    thresholds(config),
                    config.new_item_hours,
                    progress=step,
                    features=features,
                )
            step("save")
            version = store.save(model)
    first = store.promoted() is None
    if promote or first:
        store.promote(version)
    return {
        "version": version,
        "promoted": promote or first,
        "seconds": round(time.perf_counter() - started, 1),
        "events": model.metadata.get("events"),
        "shoppers": model.metadata.get("shoppers"),
        "items": model.n_items,
        "blends": {t.value: dict(b.weights) for t, b in model.blends.items()},
        "ranker": {"skipped": unavailable} if unavailable else ranker_summary(model),
        "skipped_records": interactions.skipped,
        "skipped_reasons": list(interactions.reasons),
    }


def ranker_summary(model: RankingModel) -> dict[str, Any]:
    """What the learned ranker was fitted on and how well it validated (its most
    important features first), or why the model has none."""
    if model.ranker is None:
        default = "not asked for (the feature store is off, or --no-ranker)"
        return {"skipped": model.metadata.get("ranker_skipped", default)}
    meta = model.ranker.metadata
    importance = sorted(meta.get("importance", {}).items(), key=lambda kv: -kv[1])
    return {
        "moments": meta.get("moments"),
        "rounds": meta.get("rounds"),
        "validation_ndcg@20": meta.get("validation_ndcg@20"),
        # [feature, share of the gain] pairs, the largest first: a list, so that JSON
        # printed with sorted keys keeps the order.
        "importance": [[name, share] for name, share in importance[:SHOWN_IMPORTANCE]],
    }


def run_evaluate(
    config: Config,
    interactions: Any,
    split: str,
    k: int,
    repurchase: str,
    test_days: float,
    show: bool,
    protocol: str = "purchases",
    ranker: FeatureSource | None = None,
) -> dict[str, Any]:
    """The purchases or the session protocol; with `ranker` (where the data came from)
    the learned ranker too, on a scratch feature store backfilled from those events."""
    from shopper.training.pipeline import evaluate
    from shopper.training.session_eval import evaluate_sessions

    mode, tiers = Repurchase(repurchase), thresholds(config)
    # The purchases protocol measures the ranker on the time split only: no store else.
    wanted = ranker is not None and (protocol == "session" or split == "time")
    with ExitStack() as stack:
        features, unavailable = None, None
        if wanted and ranker is not None:
            features, unavailable = _open_features(stack, config, ranker, show, scratch=True)
        with stages(show) as step:
            if protocol == "session":
                report = evaluate_sessions(interactions, test_days, k, mode, tiers, step, features)
            else:
                report = evaluate(interactions, split, test_days, k, mode, tiers, step, features)
    if unavailable:
        report["ranker"] = {"skipped": unavailable}
    return report


def _open_features(
    stack: ExitStack, config: Config, source: FeatureSource, show: bool, scratch: bool
) -> tuple[FeatureStore | None, str | None]:
    """The ranker's feature store, open until `stack` closes; or, when the feature store's
    package is not installed, none and why: the models do without the ranker."""
    try:
        return stack.enter_context(ranker_features(config, source, show, scratch)), None
    except MissingExtra as exc:
        return None, f"{exc} (or pass --no-ranker)"


def list_models(config: Config) -> list[dict[str, Any]]:
    store = model_store(config)
    return [
        {
            "version": info.version,
            "trained_at": info.trained_at,
            "promoted": info.promoted,
            "events": info.metadata.get("events"),
            "items": info.metadata.get("items"),
            "shoppers": info.metadata.get("shoppers"),
            "data_range": info.metadata.get("data_range"),
            "ranker": "ranker" in info.metadata,  # the trainer's record of a fitted ranker
        }
        for info in store.versions()
    ]


def export_lists(config: Config, k: int, out: Path, users: Path | None) -> dict[str, Any]:
    """CSV `user_id,rank,item_id,score` from the promoted model, with its tiers and
    filters: sold-out items (the live stock set of the configured cache) and, with
    `repurchase = exclude`, what each user bought."""
    from shopper.bootstrap import build_system
    from shopper.training.data import read_users

    model = model_store(config).load_promoted()
    if model is None:
        raise ShopperError("no promoted model: run `shopper train` first")
    wanted = (
        list(read_users(users))
        if users
        else [s.removeprefix("u:") for s in model.histories.subjects if s.startswith("u:")]
    )
    system = build_system(config)
    rows = 0
    try:
        now = time.time()
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "rank", "item_id", "score"])
            for user in wanted:
                ranked = _exported(model, f"u:{user}", k, now, system.cache.sold_out_among)
                for rank, item in enumerate(ranked, start=1):
                    writer.writerow([user, rank, item.item_id, f"{item.score:.6f}"])
                    rows += 1
    finally:
        system.close()
    return {"users": len(wanted), "rows": rows, "out": str(out), "version": model.version}


def _exported(
    model: RankingModel, subject: str, k: int, now: float, sold_out: Callable[[Any], set[str]]
) -> list[Any]:
    from shopper.domain.recommender import build_profile, recommend

    ranked = recommend(model, build_profile(model, subject, now), k * 2, now)
    gone = sold_out([s.item_id for s in ranked.items]) if ranked.items else set()
    return [s for s in ranked.items if s.item_id not in gone][:k]
