"""The feature store the learned ranker is fitted and measured on, for `shopper train` and
`shopper evaluate`: offline rows backfilled from the very events the models learn from.

A data set folder or canonical files get a scratch store of their own, dropped after:
their rows must not replace the configured store's, which mirror the event archive. The
archive itself is backfilled into the configured store, as `shopper features backfill`
does (the backfill is idempotent). The scratch store is in memory when the configured
feature store is (`feature_store = "memory"`: fast), else Feast in a temporary folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shopper.config import Config
from shopper.domain.event import Event
from shopper.ports.feature_store import FeatureStore


@dataclass(frozen=True, slots=True)
class FeatureSource:
    """Where the training data came from: a data set folder, canonical files, or (neither
    given) the event archive."""

    dataset: Path | None = None
    events: Path | None = None
    catalog: Path | None = None
    given: tuple[Event, ...] | None = None  # events in hand (the demo's simulated past)

    @property
    def archived(self) -> bool:
        """The events are the archive's."""
        return self.dataset is None and self.events is None and self.given is None


@contextmanager
def ranker_features(
    config: Config, source: FeatureSource, show: bool, scratch: bool = False
) -> Iterator[FeatureStore]:
    """A feature store whose offline rows are those of `source`'s events, open for the
    block; a progress bar (on stderr) for the backfill when `show`. `scratch`: a store of
    its own even for the archive (an evaluation changes nothing it does not own)."""
    from shopper.feature_tasks import backfill_progress
    from shopper.services.feature_backfill import backfill_events

    if source.archived and not scratch:
        with _configured_store(config) as store:
            with backfill_progress(show, "backfill: archive") as tick:
                backfill_events(_archived(config), store, tick)
            yield store
        return
    events = source_events(config, source)
    with _scratch_store(config) as store:
        with backfill_progress(show, "backfill: events") as tick:
            backfill_events(events, store, tick)
        yield store


def source_events(config: Config, source: FeatureSource) -> list[Event]:
    """`source`'s events as a shop would have archived them: catalog and interactions."""
    if source.given is not None:
        return list(source.given)
    if source.dataset is not None:
        from shopper.demo.datasets import dataset_events

        return dataset_events(source.dataset)
    if source.events is not None:
        from shopper.training.data import file_events

        return file_events(source.events, source.catalog)
    return _archived(config)


def _archived(config: Config) -> list[Event]:
    from shopper.feature_wiring import build_event_archive

    archive = build_event_archive(config)
    archive.flush()
    return list(archive.read())


@contextmanager
def _configured_store(config: Config) -> Iterator[FeatureStore]:
    from shopper.feature_tasks import feature_config
    from shopper.feature_wiring import feature_store_opener

    store = feature_store_opener(feature_config(config))()
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _scratch_store(config: Config) -> Iterator[FeatureStore]:
    if config.feature_store == "memory":
        from shopper.adapters.memory_feature_store import InMemoryFeatureStore

        yield InMemoryFeatureStore()
        return
    from shopper.adapters.feast_feature_store import FeastFeatureStore
    from shopper.adapters.feast_repo import FeastSettings

    with tempfile.TemporaryDirectory(prefix="shopper-ranker-") as folder:
        settings = FeastSettings(config.feature_repo, Path(folder), config.feature_project)
        store = FeastFeatureStore(settings)
        try:
            store.apply()
            yield store
        finally:
            store.close()
