"""`shopper keys`: where the API keys come from, and the keys, for the operator."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from shopper.cli_common import ConfigFile, DataDir, Json, _config, _fail, app
from shopper.config_files import SECRET_FIELDS
from shopper.errors import ShopperError


@app.command()
def keys(
    new: Annotated[
        bool, typer.Option("--new", help="print a fresh random key (to configure or rotate)")
    ] = False,
    as_json: Json = False,
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Print the API keys `shopper serve` uses with these settings, and where they come
    from: configured (SHOPPER_ADMIN_TOKEN, ..., a secrets file), else the keys file in the
    data folder, generated now if there is none yet. Keep the output private."""
    from shopper.keys import keys_path, new_key, with_keys

    if new:
        typer.echo(new_key())
        return
    config = _config(config_file, data_dir=data_dir)
    try:
        keyed = with_keys(config)
    except ShopperError as exc:
        raise _fail(exc) from None
    generated = config.admin_token is None or config.ingest_key is None
    out = {"keys_file": str(keys_path(config)) if generated else None}
    for name in SECRET_FIELDS:
        secret = getattr(keyed, name)
        out[name] = secret.get_secret_value() if secret is not None else None
    if as_json:
        typer.echo(json.dumps(out))
        return
    where = f"keys file {out['keys_file']}" if generated else "configured"
    typer.echo(f'# API keys ({where}); README, "Keys", tells who needs which')
    typer.echo(f"admin_token = {out['admin_token']}")
    typer.echo(f"ingest_key = {out['ingest_key']}")
    read = out["read_key"] or "(not set: reads are open)"
    typer.echo(f"read_key = {read}")
