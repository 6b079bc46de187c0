"""Feast's repository, built from shopper's settings: no hand-edited feature_store.yaml.

The definitions (entities, sources, feature views) live in `feature_repo/*.py`; this
module loads them, makes the `RepoConfig` (SQLite online store under the data folder, or
Redis), and lays out the offline files the definitions' FileSources point at.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from shopper.domain.features.spec import AS_OF, VIEWS, Dtype, ViewSpec
from shopper.errors import ConfigError, MissingExtra

try:
    import pyarrow as pa
    from feast import Entity, FeatureView, RepoConfig
    from feast.data_source import DataSource
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RegistryConfig
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if (exc.name or "").partition(".")[0] not in ("feast", "pyarrow", "pandas"):
        raise
    raise MissingExtra("feast", "feast") from None

TIMESTAMP = "event_timestamp"  # the FileSources' timestamp_field
REDIS_TIMEOUT_S = 5
# Lists of ids are stored as JSON arrays in strings: Feast's file offline store hashes
# list columns element by element on every retrieval (seconds for a few thousand rows).
_ARROW = {
    Dtype.INT64: pa.int64(),
    Dtype.FLOAT64: pa.float64(),
    Dtype.BOOL: pa.bool_(),
    Dtype.STRING: pa.string(),
    Dtype.STRING_LIST: pa.string(),
}


@dataclass(frozen=True, slots=True)
class FeastSettings:
    """Where the definitions are, where Feast keeps its files, which online store."""

    definitions: Path  # the feature_repo folder
    data_dir: Path  # registry, SQLite online store, offline files
    project: str = "shopper"
    redis_url: str | None = None  # Feast's Redis online store instead of SQLite
    online_ttl_s: int | None = None  # Redis keys of idle entities expire after this


def repo_config(settings: FeastSettings) -> RepoConfig:
    data = settings.data_dir.resolve()
    online: Any
    if settings.redis_url:
        # skip_dedup: the last write of a row wins, as in SQLite. The pipeline writes an
        # entity's rows in as_of order; a recomputed row at the same as_of must replace
        # the old one, which Feast's timestamp check would drop.
        online = RedisOnlineStoreConfig(
            connection_string=redis_connection_string(settings.redis_url),
            key_ttl_seconds=settings.online_ttl_s,
            skip_dedup=True,
        )
    else:
        online = SqliteOnlineStoreConfig(path=str(data / "online.db"))
    return RepoConfig(
        project=settings.project,
        provider="local",
        registry=RegistryConfig(path=str(data / "registry.db"), cache_ttl_seconds=60),
        online_store=online,
        offline_store=DaskOfflineStoreConfig(type="file"),
        repo_path=data,  # the FileSources' relative paths resolve here
        entity_key_serialization_version=3,
    )


def redis_connection_string(url: str) -> str:
    """`redis://[user:password@]host:port/db` as Feast's `host:port,db=N,...`."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(f"not a Redis URL: {url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.strip("/")
    parts.append(f"db={int(db) if db else 0}")
    # A Redis that stops answering must fail the feature push, not hang it forever.
    parts += [f"socket_timeout={REDIS_TIMEOUT_S}", f"socket_connect_timeout={REDIS_TIMEOUT_S}"]
    if parsed.username:
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def load_definitions(folder: Path) -> list[Any]:
    """The Feast objects defined in `folder/*.py`, as `feast apply` would collect them."""
    files = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    if not files:
        raise ConfigError(f"no Feast definitions (*.py) in feature_repo folder {folder}")
    found: list[Any] = []
    for path in files:
        for obj in vars(_import(path)).values():
            if isinstance(obj, Entity | FeatureView | DataSource) and not any(
                obj is f for f in found
            ):
                found.append(obj)
    sources = [o for o in found if isinstance(o, DataSource)]
    for source in sources:
        batch = getattr(source, "batch_source", None)
        if batch is not None and not any(batch is f for f in found):
            found.append(batch)
    return found


def _import(path: Path) -> Any:
    name = f"_shopper_feature_repo_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load Feast definitions from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def offline_schema(view: ViewSpec) -> pa.Schema:
    """The columns of a view's offline file: join key, timestamp, as_of, features."""
    fields = [
        (view.entity.join_key, pa.string()),
        (TIMESTAMP, pa.timestamp("us", tz="UTC")),
        (AS_OF, pa.float64()),
    ]
    fields += [(f.name, _ARROW[f.dtype]) for f in view.features]
    return pa.schema(fields)


def offline_schemas() -> dict[str, pa.Schema]:
    return {name: offline_schema(view) for name, view in VIEWS.items()}
