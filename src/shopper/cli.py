"""The `shopper` command line."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from shopper.cli_common import (
    AdminToken,
    CacheUrl,
    ConfigFile,
    DataDir,
    IngestKey,
    StreamUrl,
    _config,
    _fail,
    app,
)
from shopper.config import Config
from shopper.errors import ShopperError


class Role(StrEnum):
    api = "api"
    processor = "processor"
    all = "all"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    role: Annotated[Role, typer.Option(help="api, processor, or all in one process")] = Role.all,
    workers: Annotated[
        int, typer.Option(min=1, help="API worker processes (with --role api): one per core")
    ] = 1,
    stream_url: StreamUrl = None,
    cache_url: CacheUrl = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Run the HTTP API and/or the stream processor (on jemalloc where the system has it,
    so the memory of expired shoppers goes back to the system; setting `allocator`)."""
    from shopper.allocator import run_on_chosen_allocator

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
    )
    config = _config(config_file, stream_url=stream_url, cache_url=cache_url, data_dir=data_dir)
    try:
        # Before anything heavy is loaded: this may start the process again on jemalloc.
        run_on_chosen_allocator(config.allocator)
        from shopper.keys import with_keys
        from shopper.services.runtime import serve as run_serve

        if role is not Role.processor:
            config = with_keys(config)  # the configured keys, else the data folder's
        run_serve(config, host=host, port=port, role=role.value, workers=workers)
    except ShopperError as exc:
        raise _fail(exc) from None


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
    experiment: Annotated[
        bool,
        typer.Option(
            "--experiment",
            help="route 2% of shoppers to a challenger (the baseline ranker) whose simulated "
            "shoppers convert half as often, and report per-variant figures",
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

    # Where the API keys are (never a key), on stderr; other records as Python's default.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("shopper.keys").setLevel(logging.INFO)
    config = _config(
        config_file,
        stream_url=stream_url,
        cache_url=cache_url,
        data_dir=data_dir,
        feature_store="feast" if features else None,
    )
    options = DemoOptions(
        dataset=dataset,
        shoppers=shoppers,
        max_events=max_events,
        seed=seed,
        progress=not as_json,
        experiment=experiment,
    )
    try:
        report = run_demo(config, options)
    except ShopperError as exc:
        raise _fail(exc) from None
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
        if isinstance(value, SecretStr):
            value = "(set; `shopper keys` prints it)"
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
    admin_token: AdminToken = None,
    ingest_key: IngestKey = None,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Post a file of events (or catalog items), or a shipped data set, to a running API in
    batches; print one JSON result. Exits 1 if the API rejected any record."""
    from shopper.keys import client_keys
    from shopper.loader import Keys, load_dataset, load_file

    _check_load_source(path, dataset, max_events, items)
    try:
        config = _config(config_file, data_dir=data_dir)
        keys = Keys(*client_keys(config, admin_token, ingest_key))
        if dataset is not None:
            result = load_dataset(dataset, api, batch=batch, max_events=max_events, keys=keys)
            rejected = result["items"]["rejected"] + result["events"]["rejected"]
        else:
            assert path is not None
            result = load_file(path, api, batch=batch, items=items, keys=keys)
            rejected = result["rejected"]
    except ShopperError as exc:
        raise _fail(exc) from None
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
        raise _fail(exc) from None
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


# The model and experiment commands register themselves on `app` when imported.
import shopper.cli_experiment  # noqa: E402
import shopper.cli_keys  # noqa: E402
import shopper.cli_models  # noqa: E402, F401
from shopper import cli_rehearse  # noqa: E402, F401


def main() -> None:
    app()
