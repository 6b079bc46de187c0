"""The feature store's parts, built from the config: off, in memory (tests), or Feast
(SQLite under data_dir, or Redis). Used by the composition root (`bootstrap`) and by the
feature, model and ranker commands."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shopper.config import Config
from shopper.errors import ConfigError
from shopper.ports.event_archive import EventArchive
from shopper.ports.event_log import EventLog
from shopper.ports.feature_store import FeatureLog, FeatureStore
from shopper.services.feature_pipeline import FeatureFeeds, FeaturePipeline
from shopper.services.feature_rebuild import RebuildProgress


def feature_folder(config: Config) -> Path:
    """Where the feature store keeps its files: archive/, served/, feast/."""
    return config.data_dir / "features"


def build_feature_pipeline(
    config: Config, shared_log: EventLog | None = None
) -> FeaturePipeline | None:
    """The processors' feature collaborator; None when the feature store is off. On a
    stream shared with processors in other processes (`shared_log`) it reads items and
    the catalog from feeds of their own (see `FeaturePipeline`)."""
    if config.feature_store == "off":
        return None
    return FeaturePipeline(
        build_event_archive(config),
        feature_store_opener(config),
        build_feature_log(config),
        log_sample=config.feature_log_sample,
        open_feeds=feature_feeds_opener(config, shared_log) if shared_log else None,
        rebuild_progress=rebuild_progress,
    )


def rebuild_progress() -> AbstractContextManager[RebuildProgress]:
    """The start-up rebuild's progress bar, on the server's stderr."""
    from shopper.feature_tasks import backfill_progress  # it imports this module

    return backfill_progress(True, "features: rebuilding state from the archive")


def feature_feeds_opener(config: Config, log: EventLog) -> Callable[[], FeatureFeeds]:
    def open_feeds() -> FeatureFeeds:
        return FeatureFeeds(
            # Whoever is assigned an item partition rebuilds its items from the topic.
            items=log.subscribe(
                [config.item_events_topic], config.item_features_group, from_start=True
            ),
            # A group of its own, never committed: this replica reads every partition
            # of the catalog from the start, as every replica does.
            catalog=log.subscribe(
                [config.catalog_topic], f"{config.catalog_topic}.reader-{uuid.uuid4().hex[:12]}"
            ),
        )

    return open_feeds


def build_event_archive(config: Config) -> EventArchive:
    if config.feature_store == "memory":
        from shopper.adapters.memory_event_archive import InMemoryEventArchive

        return InMemoryEventArchive()
    from shopper.adapters.parquet_event_archive import ParquetEventArchive

    return ParquetEventArchive(feature_folder(config) / "archive")


def build_feature_log(config: Config) -> FeatureLog:
    if config.feature_store == "memory":
        from shopper.adapters.memory_feature_log import InMemoryFeatureLog

        return InMemoryFeatureLog()
    from shopper.adapters.jsonl_feature_log import JsonlFeatureLog

    return JsonlFeatureLog(feature_folder(config) / "served")


def feature_store_opener(config: Config) -> Callable[[], FeatureStore]:
    """Opens the feature store: the in-memory one is shared, each Feast store is new.
    Feast is imported only when a store is opened (it takes seconds), but a missing
    install fails here, at start-up."""
    if config.feature_store == "memory":
        from shopper.adapters.memory_feature_store import InMemoryFeatureStore

        shared = InMemoryFeatureStore()
        return lambda: shared
    if config.feature_store != "feast":
        raise ConfigError(f"the feature store is {config.feature_store!r}")
    import importlib.util

    from shopper.errors import MissingExtra

    if importlib.util.find_spec("feast") is None:
        raise MissingExtra("feast", "feast")

    def open_feast() -> FeatureStore:
        from shopper.adapters.feast_feature_store import FeastFeatureStore

        store = FeastFeatureStore(feast_settings(config))
        store.ensure_applied()
        return store

    return open_feast


def feast_settings(config: Config) -> Any:
    """shopper's config as the Feast adapter's settings (a FeastSettings)."""
    from shopper.adapters.feast_repo import FeastSettings
    from shopper.domain.features.spec import VIEWS

    redis = urlparse(config.cache_url).scheme in ("redis", "rediss")
    return FeastSettings(
        definitions=config.feature_repo,
        data_dir=feature_folder(config) / "feast",
        project=config.feature_project,
        redis_url=config.cache_url if redis else None,
        online_ttl_s=int(max(v.ttl_s for v in VIEWS.values())) if redis else None,
    )
