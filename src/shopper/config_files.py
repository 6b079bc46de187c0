"""The settings files: the TOML config file (`--config`, `SHOPPER_CONFIG`) and the
secrets file of API keys (`secrets_file`), each as top-level keys or a `[shopper]` table."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from shopper.errors import ConfigError

SECRET_FIELDS = ("admin_token", "ingest_key", "read_key")


def read_secrets(path: Path) -> dict[str, Any]:
    """The keys of a secrets file (TOML: `admin_token`, `ingest_key`, `read_key`, at the
    top or in a [shopper] table); anything else in it is an error."""
    section = read_toml(path)
    unknown = sorted(set(section) - set(SECRET_FIELDS))
    if unknown:
        raise ConfigError(
            f"secrets file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"it holds {', '.join(SECRET_FIELDS)}"
        )
    return section


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Either top-level keys or a [shopper] table.
    section = data.get("shopper", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [shopper] must be a table")
    return section
