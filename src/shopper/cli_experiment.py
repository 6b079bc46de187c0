"""`shopper experiment set|ramp|kill|show`: the experiment's flag file, edited in place.

Running processes pick a change up within about a second (the flag client polls the
file); every change is logged beside the file (`adapters.flag_audit`).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shopper.cli_common import ConfigFile, DataDir, Json, _config, _fail, app
from shopper.config import Config
from shopper.domain.experiment import (
    BASELINE,
    PROMOTED,
    Experiment,
    ExperimentError,
    Variant,
    check,
    with_share,
)
from shopper.errors import ShopperError

experiment_app = typer.Typer(
    help="The experiment: which model each shopper is served, as a flagd flag file.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

FlagsOpt = Annotated[
    Path | None,
    typer.Option(
        "--flags",
        help="the flag file [env SHOPPER_FLAGS_FILE; default DATA_DIR/flags.json]",
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why, for the change log")]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="who, for the change log [default: the OS user]")
]
SHOWN_CHANGES = 10
SHOWN_VERSIONS = 10


@experiment_app.command("set")
def experiment_set(
    variant: Annotated[
        list[str],
        typer.Option(
            "--variant",
            help="NAME=MODEL:PERCENT, repeated; the first is the champion. MODEL: a stored "
            "model version, `promoted` or `baseline`",
        ),
    ],
    shadow: Annotated[
        list[str] | None,
        typer.Option("--shadow", help="NAME=MODEL, repeated: scored and logged, never served"),
    ] = None,
    reason: ReasonOpt = "",
    by: ByOpt = None,
    data_dir: DataDir = None,
    flags: FlagsOpt = None,
    config_file: ConfigFile = None,
) -> None:
    """Replace the experiment: routed variants (weights summing to 100) and shadows."""
    experiment = Experiment(
        tuple(_routed(spec) for spec in variant), tuple(_shadow(spec) for spec in shadow or [])
    )
    config = _config(config_file, data_dir=data_dir, flags_file=flags)
    _write(config, experiment, "set", experiment.champion.name, reason, by, known=True)


@experiment_app.command("ramp")
def experiment_ramp(
    name: Annotated[
        str, typer.Argument(metavar="VARIANT", help="a routed variant, not the champion")
    ],
    percent: Annotated[int, typer.Argument(help="its new share of shoppers, 0-100")],
    reason: ReasonOpt = "",
    by: ByOpt = None,
    data_dir: DataDir = None,
    flags: FlagsOpt = None,
    config_file: ConfigFile = None,
) -> None:
    """Route PERCENT of shoppers to VARIANT; the champion takes up the difference."""
    config = _config(config_file, data_dir=data_dir, flags_file=flags)
    _reshare(config, name, percent, reason, by)


@experiment_app.command("kill")
def experiment_kill(
    name: Annotated[
        str, typer.Argument(metavar="VARIANT", help="a routed variant, not the champion")
    ],
    reason: ReasonOpt = "",
    by: ByOpt = None,
    data_dir: DataDir = None,
    flags: FlagsOpt = None,
    config_file: ConfigFile = None,
) -> None:
    """Route nobody to VARIANT (its share goes to the champion); logged with who and why."""
    config = _config(config_file, data_dir=data_dir, flags_file=flags)
    _reshare(config, name, 0, reason, by)


def _reshare(config: Config, name: str, percent: int, reason: str, by: str | None) -> None:
    """A ramp of `name` to `percent` (0: a kill), written and logged."""
    try:
        experiment = with_share(_read(config), name, percent)
    except ShopperError as exc:
        raise _fail(exc) from None
    if percent == 0:
        # A kill must work even if a model has gone missing since: no model check here.
        _write(config, experiment, "kill", name, reason, by, known=False)
    else:
        _write(config, experiment, "ramp", name, reason, by, known=True, percent=percent)


@experiment_app.command("show")
def experiment_show(
    as_json: Json = False,
    data_dir: DataDir = None,
    flags: FlagsOpt = None,
    config_file: ConfigFile = None,
) -> None:
    """The experiment in the flag file, and its last changes."""
    from shopper.adapters.flag_audit import recent_changes

    config = _config(config_file, data_dir=data_dir, flags_file=flags)
    try:
        experiment = _read(config)
    except ShopperError as exc:
        raise _fail(exc) from None
    changes = recent_changes(config.flags_path, SHOWN_CHANGES)
    if as_json:
        report = {"flags_file": str(config.flags_path), **_described(experiment)}
        typer.echo(json.dumps({**report, "changes": changes}, sort_keys=True))
        return
    exists = "" if config.flags_path.exists() else " (no file yet: the default)"
    typer.echo(f"flag file {config.flags_path}{exists}")
    typer.echo(_table(experiment))
    if changes:
        typer.echo("last changes:")
        for c in changes:
            share = f" to {c['percent']}%" if c.get("percent") is not None else ""
            why = f": {c['reason']}" if c.get("reason") else ""
            who = f" (by {c['by']})" if c.get("by") else ""
            typer.echo(f"  {c.get('at')} {c.get('action')} {c.get('variant')}{share}{why}{who}")


def _routed(spec: str) -> Variant:
    name, model_share = _split(spec, "=", "--variant", "NAME=MODEL:PERCENT")
    model, share = _split(model_share, ":", "--variant", "NAME=MODEL:PERCENT", right=True)
    if not share.isdigit():
        raise typer.BadParameter(f"--variant {spec!r}: PERCENT must be a whole number 0-100")
    return Variant(name, model, int(share))


def _shadow(spec: str) -> Variant:
    name, model = _split(spec, "=", "--shadow", "NAME=MODEL")
    return Variant(name, model, 0)


def _split(spec: str, sep: str, option: str, form: str, right: bool = False) -> tuple[str, str]:
    left, found, rest = spec.rpartition(sep) if right else spec.partition(sep)
    if not found or not left or not rest:
        raise typer.BadParameter(f"{option} {spec!r} is not {form}")
    return left, rest


def _read(config: Config) -> Experiment:
    from shopper.adapters.flagd_format import read_flag_file

    return read_flag_file(config.flags_path)


def _write(
    config: Config,
    experiment: Experiment,
    action: str,
    variant: str,
    reason: str,
    by: str | None,
    *,
    known: bool,
    percent: int | None = None,
) -> None:
    from shopper.adapters.flag_audit import record_change
    from shopper.adapters.flagd_format import write_flag_file

    try:
        check(experiment)  # the definition's own faults first, before opening the store
        models = _known_models(config) if known else None
        write_flag_file(config.flags_path, experiment, models)
    except ExperimentError as exc:
        hint = f"; the known models: {_listed(models)}" if "unknown model" in str(exc) else ""
        raise _fail(ExperimentError(f"{exc}{hint}")) from None
    except ShopperError as exc:
        raise _fail(exc) from None
    record_change(config.flags_path, action, variant, reason, by=by or _user(), percent=percent)
    typer.echo(_table(experiment))


def _known_models(config: Config) -> list[str]:
    from shopper.model_tasks import model_store

    return [info.version for info in model_store(config).versions()]


def _listed(models: list[str] | None) -> str:
    # The newest versions are the likely ones; the store may hold many.
    shown = [PROMOTED, BASELINE, *(models or [])[-SHOWN_VERSIONS:]]
    more = len(models or []) - SHOWN_VERSIONS
    return ", ".join(shown) + (f" and {more} older versions" if more > 0 else "")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _described(experiment: Experiment) -> dict[str, Any]:
    return {
        "champion": experiment.champion.name,
        "variants": [
            {"name": v.name, "model": v.model, "weight": v.weight} for v in experiment.variants
        ],
        "shadows": [{"name": s.name, "model": s.model} for s in experiment.shadows],
    }


def _table(experiment: Experiment) -> str:
    rows = [
        (v.name, v.model, f"{v.weight}%", "champion" if i == 0 else "")
        for i, v in enumerate(experiment.variants)
    ]
    rows += [(s.name, s.model, "-", "shadow: scored, never served") for s in experiment.shadows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"  {n:<{widths[0]}}  {m:<{widths[1]}}  {w:>{widths[2]}}  {note}".rstrip()
        for n, m, w, note in rows
    )
