"""The model commands of `shopper`: train, evaluate, models list|promote, export."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from shopper.cli_common import (
    CacheUrl,
    CatalogOpt,
    ConfigFile,
    DataDir,
    DatasetOpt,
    EventsOpt,
    Json,
    ModelDir,
    UsersOpt,
    _config,
    _fail,
    app,
)
from shopper.errors import ShopperError

RankerOpt = Annotated[
    bool,
    typer.Option(
        "--ranker/--no-ranker",
        help="fit the learned ranker too, on a feature store backfilled from the same events: "
        "in memory when feature_store = memory, else Feast",
    ),
]


@app.command()
def train(
    dataset: DatasetOpt = None,
    events: EventsOpt = None,
    catalog: CatalogOpt = None,
    users: UsersOpt = None,
    promote: Annotated[
        bool, typer.Option(help="serve the new version at once (the first one always is)")
    ] = False,
    retrain: Annotated[
        bool,
        typer.Option(
            help="reuse the promoted model's tuned settings and learned ranker: no tuning step"
        ),
    ] = False,
    ranker: Annotated[
        bool | None,
        typer.Option(
            "--ranker/--no-ranker",
            help="fit the learned ranker too (default: when the feature store is on, which "
            "it needs to serve), on a feature store backfilled from the same events",
        ),
    ] = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Fit every model (popularity, content, EASE, item-kNN, ALS), tuned on a validation
    window of the data, and (with the feature store on, or --ranker) the learned ranker
    that re-orders their candidates; store a new model version. Reads the event archive
    unless --dataset or --events says otherwise. The ranker's feature store: the
    configured one, backfilled from the archive (as `shopper features backfill`); for
    --dataset or --events, a scratch store of those events (in memory when
    feature_store = memory, else Feast in a temporary folder)."""
    from shopper.model_tasks import run_train, training_data
    from shopper.ranker_tasks import FeatureSource

    config = _config(config_file, data_dir=data_dir, model_dir=model_dir)
    if ranker is None:  # a ranker serves only where the processors read features
        ranker = config.feature_store != "off"
    source = FeatureSource(dataset, events, catalog) if ranker else None
    try:
        data = training_data(config, dataset, events, catalog, users)
        result = run_train(config, data, promote, not as_json, retrain, source)
    except ShopperError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(result, sort_keys=True) if as_json else _train_summary(result))


def _train_summary(result: dict[str, Any]) -> str:
    lines = [
        f"model {result['version']} trained in {result['seconds']} s on {result['events']} "
        f"events, {result['shoppers']} shoppers, {result['items']} items"
        + (" (promoted: now served)" if result["promoted"] else ""),
    ]
    for tier, weights in result["blends"].items():
        used = ", ".join(f"{n} {w:g}" for n, w in weights.items() if w > 0)
        lines.append(f"  tier {tier}: {used}")
    ranker = result["ranker"]
    if "skipped" in ranker:
        lines.append(f"  learned ranker: none ({ranker['skipped']})")
    else:
        lines.append(
            f"  learned ranker: {ranker['moments']} moments, {ranker['rounds']} rounds, "
            f"validation NDCG@20 {ranker['validation_ndcg@20']}"
        )
    if result["skipped_records"]:
        lines.append(f"  skipped {result['skipped_records']} bad records, e.g.:")
        lines += [f"    {r}" for r in result["skipped_reasons"][:5]]
    return "\n".join(lines)


class Split(StrEnum):
    time = "time"
    random = "random"


class Protocol(StrEnum):
    purchases = "purchases"
    session = "session"


class RepurchaseOpt(StrEnum):
    exclude = "exclude"
    allow = "allow"


@app.command()
def evaluate(
    dataset: DatasetOpt = None,
    events: EventsOpt = None,
    catalog: CatalogOpt = None,
    users: UsersOpt = None,
    split: Annotated[Split, typer.Option(help="time: the last --test-days are the test")] = (
        Split.time
    ),
    k: Annotated[int, typer.Option(help="list length measured")] = 20,
    repurchase: Annotated[RepurchaseOpt, typer.Option(help="exclude or allow repeats")] = (
        RepurchaseOpt.exclude
    ),
    test_days: Annotated[float, typer.Option(help="test window (and validation window)")] = 30.0,
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="purchases: what each shopper buys in the test window; session: complete "
            "each test visit from its first part (basket completion, or next item)"
        ),
    ] = Protocol.purchases,
    ranker: RankerOpt = True,
    as_json: Json = False,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Recall@K, NDCG@K, MRR and coverage, overall and per tier, of popularity, every
    single model, `shopper` (the tiered system as served) and `learned` (its candidates
    re-ordered by the learned ranker; time split only), with paired differences and
    their standard errors (learned - shopper; in the session protocol, session -
    no-session and learned - session). The ranker's features come from a scratch
    feature store backfilled from the same events: in memory when feature_store =
    memory (fast), else Feast in a temporary folder. docs/evaluation.md."""
    from shopper.model_tasks import run_evaluate, training_data
    from shopper.ranker_tasks import FeatureSource

    config = _config(config_file, data_dir=data_dir)
    source = FeatureSource(dataset, events, catalog) if ranker else None
    try:
        data = training_data(config, dataset, events, catalog, users)
        report = run_evaluate(
            config, data, split.value, k, repurchase.value, test_days, not as_json,
            protocol.value, source,
        )  # fmt: skip
    except ShopperError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    count, unit = (
        (report["cases"], "test cases")
        if protocol is Protocol.session
        else (report["test_shoppers"], "test shoppers")
    )
    typer.echo(f"recall@{k} / ndcg / mrr / coverage ({count} {unit})")
    for name, result in report["models"].items():
        tiers = "  ".join(
            f"{t} {v['recall']:.3f} (n={v['users']})" for t, v in result["tiers"].items()
        )
        o = result["overall"]
        typer.echo(
            f"  {name:<12} {o['recall']:.3f} {o['ndcg']:.3f} {o['mrr']:.3f} "
            f"{o['coverage']:.3f}   {tiers}"
        )
    for pair, d in report.get("differences", {}).items():
        typer.echo(
            f"  {pair}: recall {d['recall']:+.4f} (SE {d['recall_se']:.4f}), "
            f"ndcg {d['ndcg']:+.4f} (SE {d['ndcg_se']:.4f})"
        )
    if "skipped" in report.get("ranker", {}):
        typer.echo(f"  learned ranker: none ({report['ranker']['skipped']})")


models_app = typer.Typer(help="Trained model versions: list, promote.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    as_json: Json = False,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    config_file: ConfigFile = None,
) -> None:
    """The stored versions, oldest first; `*` marks the one served."""
    from shopper.model_tasks import list_models

    rows = list_models(_config(config_file, data_dir=data_dir, model_dir=model_dir))
    if as_json:
        typer.echo(json.dumps(rows, sort_keys=True))
        return
    if not rows:
        typer.echo("no models yet: run `shopper train`")
    for row in rows:
        mark = "*" if row["promoted"] else " "
        typer.echo(
            f"{mark} {row['version']}  {row['events']} events, {row['shoppers']} shoppers, "
            f"{row['items']} items" + (", learned ranker" if row["ranker"] else "")
        )


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="the version to serve")],
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Serve this version: running processors load it within `model_poll_s`."""
    from shopper.model_tasks import model_store

    store = model_store(_config(config_file, data_dir=data_dir, model_dir=model_dir))
    try:
        store.promote(version)
    except ShopperError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"promoted": version}))


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write")],
    k: Annotated[int, typer.Option(help="items per user")] = 10,
    users: UsersOpt = None,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Batch lists for email campaigns: CSV user_id,rank,item_id,score from the promoted
    model, with the same tiers and filters as served (in stock, `repurchase`)."""
    from shopper.model_tasks import export_lists

    config = _config(config_file, cache_url=cache_url, data_dir=data_dir, model_dir=model_dir)
    try:
        result = export_lists(config, k, out, users)
    except ShopperError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(result))
