"""The `shopper` command line."""

from __future__ import annotations

import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from shopper.config import Config, load_config
from shopper.errors import ShopperError

app = typer.Typer(
    help="shopper: real-time e-commerce recommendations; the page never waits for a model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StreamUrl = Annotated[
    str | None,
    typer.Option(
        "--stream-url", help="memory:// (embedded) or kafka://host:port [env SHOPPER_STREAM_URL]"
    ),
]
CacheUrl = Annotated[
    str | None,
    typer.Option(
        "--cache-url", help="memory:// (embedded) or redis://host:port/db [env SHOPPER_CACHE_URL]"
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="where local state lives [env SHOPPER_DATA_DIR; default .shopper]"
    ),
]


ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file of settings [env SHOPPER_CONFIG]"),
]


LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"


class Role(StrEnum):
    api = "api"
    processor = "processor"
    all = "all"


def _config(config_file: Path | None = None, **overrides: Any) -> Config:
    # The CLI is the composition root's front door: the one place that reads the environment.
    try:
        return load_config(os.environ, config_file, **overrides)
    except ShopperError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    role: Annotated[Role, typer.Option(help="api, processor, or all in one process")] = Role.all,
    stream_url: StreamUrl = None,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Run the HTTP API and/or the stream processor."""
    from shopper.services.runtime import serve as run_serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
    )
    config = _config(config_file, stream_url=stream_url, cache_url=cache_url, data_dir=data_dir)
    run_serve(config, host=host, port=port, role=role.value)


@app.command()
def demo(
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="replay a real data set folder (uci-online-retail or "
            "rees46-multicategory-2019oct-head) instead of the built-in simulator"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the report as one JSON object")
    ] = False,
    shoppers: Annotated[int, typer.Option(help="simulated shoppers")] = 600,
    max_events: Annotated[int, typer.Option(help="cap on replayed data set events")] = 60_000,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 7,
    features: Annotated[
        bool,
        typer.Option(
            "--features",
            help="also run the Feast feature store (archive, online push, served-row log), "
            "so `shopper features check-skew` can check the run",
        ),
    ] = False,
    stream_url: StreamUrl = None,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Run the whole loop on traffic (simulated, or a real data set) and print a report."""
    from shopper.demo.report import render_report
    from shopper.demo.runner import DemoOptions, run_demo

    config = _config(
        config_file,
        stream_url=stream_url,
        cache_url=cache_url,
        data_dir=data_dir,
        feature_store="feast" if features else None,
    )
    options = DemoOptions(
        dataset=dataset, shoppers=shoppers, max_events=max_events, seed=seed, progress=not as_json
    )
    try:
        report = run_demo(config, options)
    except ShopperError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        render_report(report)


@app.command("config")
def show_config(config_file: ConfigFile = None) -> None:
    """Print the effective settings (defaults, file, environment) with what each means."""
    config = _config(config_file)
    for name, field in Config.model_fields.items():
        value = getattr(config, name)
        note = f"  # {field.description}" if field.description else ""
        typer.echo(f"{name} = {json.dumps(str(value) if isinstance(value, Path) else value)}{note}")


@app.command()
def load(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="events as .jsonl/.ndjson/.csv, optionally .gz"),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="instead of FILE, a shipped data set folder (uci-online-retail, "
            "rees46-multicategory-2019oct-head): its catalog, then its events",
        ),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(min=0, help="with --dataset: events to send [default: all]")
    ] = None,
    api: Annotated[str, typer.Option(help="base URL of a running shopper API")] = (
        "http://127.0.0.1:8000"
    ),
    batch: Annotated[int, typer.Option(min=1, help="events per request")] = 500,
    items: Annotated[
        bool, typer.Option("--items", help="the file holds catalog items, not events")
    ] = False,
) -> None:
    """Post a file of events (or catalog items), or a shipped data set, to a running API in
    batches; print one JSON result. Exits 1 if the API rejected any record."""
    from shopper.loader import load_dataset, load_file

    _check_load_source(path, dataset, max_events, items)
    try:
        if dataset is not None:
            result = load_dataset(dataset, api, batch=batch, max_events=max_events)
            rejected = result["items"]["rejected"] + result["events"]["rejected"]
        else:
            assert path is not None
            result = load_file(path, api, batch=batch, items=items)
            rejected = result["rejected"]
    except ShopperError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result))
    if rejected:
        raise typer.Exit(1)


def _check_load_source(
    path: Path | None, dataset: Path | None, max_events: int | None, items: bool
) -> None:
    # BadParameter: typer's one public usage error; it prints the usage line, exits 2.
    if (path is None) == (dataset is None):
        both = ", not both" if path else ""
        raise typer.BadParameter(f"give either FILE or --dataset PATH{both}")
    if dataset is not None and items:
        raise typer.BadParameter("--items goes with FILE: a data set brings its own catalog")
    if path is not None and max_events is not None:
        raise typer.BadParameter("--max-events goes with --dataset")


features_app = typer.Typer(
    help="The feature store (Feast): definitions, backfill, training-serving skew check.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")


@features_app.command("apply")
def features_apply(
    cache_url: CacheUrl = None, data_dir: DataDir = None, config_file: ConfigFile = None
) -> None:
    """Register the Feast definitions (feature_repo/) and create the stores, from config."""
    from shopper.feature_tasks import apply_definitions

    config = _config(config_file, cache_url=cache_url, data_dir=data_dir)
    try:
        views = apply_definitions(config)
    except ShopperError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"applied": sorted(views)}))


@features_app.command("backfill")
def features_backfill(
    as_json: Annotated[bool, typer.Option("--json", help="no progress bar")] = False,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Recompute the offline store from the event archive, with the online path's code."""
    from shopper.feature_tasks import run_backfill

    config = _config(config_file, cache_url=cache_url, data_dir=data_dir)
    result = run_backfill(config, show_progress=not as_json)
    typer.echo(json.dumps({"events": result.events, "rows": result.rows}))


@features_app.command("check-skew")
def features_check_skew(
    sample: Annotated[int, typer.Option(help="served rows, and users and items, to check")] = 500,
    seed: Annotated[int, typer.Option(help="seed of the sample")] = 0,
    backfill: Annotated[
        bool, typer.Option(help="recompute the offline store from the archive first")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Compare served and online feature rows with the offline store; exits 1 on a mismatch
    that late events do not explain."""
    from shopper.feature_tasks import run_skew_check

    config = _config(config_file, cache_url=cache_url, data_dir=data_dir)
    report = run_skew_check(config, sample, seed, backfill, show_progress=not as_json)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        typer.echo(
            f"checked {report['checked']} rows: {report['mismatches']} mismatches, "
            f"{report['late']} of them served before late events of their time arrived"
        )
        for name, count in sorted(report["by_feature"].items()):
            typer.echo(f"  {name}: {count}")
    if report["unexplained"]:
        raise typer.Exit(1)


DatasetOpt = Annotated[
    Path | None,
    typer.Option(
        "--dataset",
        help="a shipped data set folder (uci-online-retail, rees46-multicategory-2019oct-head)",
    ),
]
EventsOpt = Annotated[
    Path | None,
    typer.Option("--events", help="events file (.jsonl/.csv, maybe .gz; docs/formats.md)"),
]
CatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="catalog items file")]
UsersOpt = Annotated[
    Path | None, typer.Option("--users", help="users file: user_id, country, region, attributes")
]
ModelDir = Annotated[
    Path | None,
    typer.Option("--model-dir", help="model versions folder [env SHOPPER_MODEL_DIR; "
                 "default DATA_DIR/models]"),
]  # fmt: skip
Json = Annotated[bool, typer.Option("--json", help="print one JSON object; no progress bar")]


def _fail(exc: ShopperError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


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
        bool, typer.Option(help="reuse the promoted model's tuned settings: no tuning step")
    ] = False,
    as_json: Json = False,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Fit every model (popularity, content, EASE, item-kNN, ALS), tuned on a validation
    window of the data, and store a new model version. Reads the event archive unless
    --dataset or --events says otherwise."""
    from shopper.model_tasks import run_train, training_data

    config = _config(config_file, data_dir=data_dir, model_dir=model_dir)
    try:
        data = training_data(config, dataset, events, catalog, users)
        result = run_train(config, data, promote, show=not as_json, retrain=retrain)
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
    if result["skipped_records"]:
        lines.append(f"  skipped {result['skipped_records']} bad records, e.g.:")
        lines += [f"    {r}" for r in result["skipped_reasons"][:5]]
    return "\n".join(lines)


class Split(StrEnum):
    time = "time"
    random = "random"


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
    as_json: Json = False,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Recall@K, NDCG@K, MRR and coverage, overall and per tier, of popularity, every
    single model, and `shopper` (the tiered system as served). docs/evaluation.md."""
    from shopper.model_tasks import run_evaluate, training_data

    config = _config(config_file, data_dir=data_dir)
    try:
        data = training_data(config, dataset, events, catalog, users)
        report = run_evaluate(
            config, data, split.value, k, repurchase.value, test_days, show=not as_json
        )
    except ShopperError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    typer.echo(f"recall@{k} / ndcg / mrr / coverage ({report['test_shoppers']} test shoppers)")
    for name, result in report["models"].items():
        tiers = "  ".join(
            f"{t} {v['recall']:.3f} (n={v['users']})" for t, v in result["tiers"].items()
        )
        o = result["overall"]
        typer.echo(
            f"  {name:<12} {o['recall']:.3f} {o['ndcg']:.3f} {o['mrr']:.3f} "
            f"{o['coverage']:.3f}   {tiers}"
        )


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
            f"{row['items']} items"
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


def main() -> None:
    app()
