"""The API keys (README, "Keys"): which ones a process uses, and the keys file that
`shopper serve` and `shopper demo` generate when none is configured.

The file (`data_dir/keys.toml`, mode 0600) has the secrets file's form (`secrets_file`),
so an operator can point `secrets_file` at it, edit it to rotate a key, or replace it.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shopper.config import Config
from shopper.config_files import SECRET_FIELDS, read_secrets
from shopper.errors import ConfigError

KEYS_FILE = "keys.toml"
KEY_BYTES = 32  # 43 URL-safe characters

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The keys one API process accepts. `read` None: reads are open. Never printed
    (`repr` shows which are set, not their values)."""

    admin: str
    ingest: str
    read: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in (self.admin, self.ingest, self.read) if k is not None]
        if len(set(given)) < len(given):
            # The same key for two kinds would give its holder the stronger one.
            raise ConfigError(
                "invalid configuration: admin_token, ingest_key and read_key must differ"
            )

    def __repr__(self) -> str:
        return f"ApiKeys(admin=***, ingest=***, read={'***' if self.read else None})"

    @classmethod
    def of(cls, config: Config) -> ApiKeys:
        """The configured keys; an admin token or ingest key not configured is a random one
        nobody knows (so nothing is open by accident: `shopper serve` fills them in from
        the keys file first, `with_keys`)."""
        return cls(
            _clear(config.admin_token) or new_key(),
            _clear(config.ingest_key) or new_key(),
            _clear(config.read_key),
        )


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def keys_path(config: Config) -> Path:
    return config.data_dir / KEYS_FILE


def with_keys(config: Config) -> Config:
    """`config` with an admin token and ingest key: the configured ones, else those of the
    keys file in the data folder, generated on first start. Logs the file's path."""
    if config.admin_token is not None and config.ingest_key is not None:
        return config
    path = keys_path(config)
    stored, created = load_or_create_keys(path)
    missing = [n for n in ("admin_token", "ingest_key") if getattr(config, n) is None]
    how = "generated into" if created else "read from"
    # The path, never a key.
    log.info("API keys: %s %s %s (`shopper keys` prints them)", " and ".join(missing), how, path)
    update = {n: SecretStr(stored[n]) for n in missing}
    return config.model_copy(update=update)


def client_keys(
    config: Config, admin: str | None = None, ingest: str | None = None
) -> tuple[str | None, str | None]:
    """The (admin token, ingest key) a client sends: given ones (flags), else configured
    ones; with neither, those of an existing keys file in the data folder (a local
    `shopper serve`'s). None where there is none."""
    admin = admin or _clear(config.admin_token)
    ingest = ingest or _clear(config.ingest_key)
    path = keys_path(config)
    if admin is None and ingest is None and path.exists():
        stored = _read_keys(path)
        return stored["admin_token"], stored["ingest_key"]
    return admin, ingest


def load_or_create_keys(path: Path) -> tuple[dict[str, str], bool]:
    """The keys file's admin token and ingest key, and whether this call created it. Created
    with mode 0600 and O_EXCL: of two processes starting at once, one writes, both read."""
    keys = {"admin_token": new_key(), "ingest_key": new_key()}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_keys(path), False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(KEYS_HEADER)
        fh.writelines(f'{name} = "{value}"\n' for name, value in keys.items())
    return keys, True


KEYS_HEADER = (
    '# shopper\'s API keys, generated on first start (README, "Keys"). Keep this file\n'
    "# private (mode 0600). Rotate: replace a value (or delete the file) and restart.\n"
)


def _read_keys(path: Path) -> dict[str, str]:
    values = read_secrets(path)
    keys = {n: values.get(n) for n in ("admin_token", "ingest_key")}
    if not all(isinstance(v, str) and v for v in keys.values()):
        raise ConfigError(
            f"keys file {path} lacks admin_token or ingest_key; delete it to have new keys made"
        )
    return {n: str(v) for n, v in keys.items()}


def dump_with_secrets(config: Config) -> dict[str, Any]:
    """The settings as JSON-ready values, the keys in clear (`model_dump` masks them): for
    a child process of this one, never for a log."""
    values = config.model_dump(mode="json")
    for name in SECRET_FIELDS:
        values[name] = _clear(getattr(config, name))
    return values


def _clear(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
