"""What every `shopper` command shares: the Typer app, option types, the config loader."""

from __future__ import annotations

import os
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
# A client's keys (README, "Keys"); unset: the configured ones, else the keys file of the
# data folder (a local `shopper serve`'s).
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        envvar="SHOPPER_ADMIN_TOKEN",
        show_envvar=True,
        help="the API's admin token (catalog, stock and price changes)",
    ),
]
IngestKey = Annotated[
    str | None,
    typer.Option(
        "--ingest-key",
        envvar="SHOPPER_INGEST_KEY",
        show_envvar=True,
        help="the API's ingest key (behaviour events)",
    ),
]


def _config(config_file: Path | None = None, **overrides: Any) -> Config:
    # The CLI is the composition root's front door: the one place that reads the environment.
    try:
        return load_config(os.environ, config_file, **overrides)
    except ShopperError as exc:
        raise typer.BadParameter(str(exc)) from None


def _fail(exc: ShopperError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)
