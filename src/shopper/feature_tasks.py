"""The work behind `shopper features ...`: apply, backfill and the skew check.

Built from the config like everything else; shows rich progress bars on stderr (so
`--json` output stays clean), or none.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shopper.config import Config
from shopper.feature_wiring import (
    build_event_archive,
    build_feature_log,
    feast_settings,
    feature_store_opener,
)
from shopper.services.feature_backfill import BackfillProgress, BackfillResult, backfill
from shopper.services.skew import EventCounts, check_skew, online_sample


def feature_config(config: Config) -> Config:
    """The feature commands work on the Feast store under data_dir even when the
    running services have the feature store off."""
    if config.feature_store == "off":
        return config.model_copy(update={"feature_store": "feast"})
    return config


def apply_definitions(config: Config) -> list[str]:
    """Register the Feast definitions and create the stores; returns the views."""
    from shopper.adapters.feast_feature_store import FeastFeatureStore

    store = FeastFeatureStore(feast_settings(feature_config(config)))
    try:
        return store.apply()
    finally:
        store.close()


def run_backfill(config: Config, show_progress: bool) -> BackfillResult:
    config = feature_config(config)
    store = feature_store_opener(config)()
    try:
        with backfill_progress(show_progress, "backfill: events") as tick:
            return backfill(build_event_archive(config), store, tick)
    finally:
        store.close()


def run_skew_check(
    config: Config, sample: int, seed: int, refresh_offline: bool, show_progress: bool
) -> dict[str, Any]:
    """Backfill (unless told not to), then compare up to `sample` served rows and the
    online rows of up to `sample` users and items with the offline store."""
    config = feature_config(config)
    archive = build_event_archive(config)
    store = feature_store_opener(config)()
    try:
        if refresh_offline:
            with backfill_progress(show_progress, "backfill: events") as tick:
                backfill(archive, store, tick)
        log = build_feature_log(config).read()
        served = random.Random(seed).sample(log, min(sample, len(log)))
        events = list(archive.read())
        online = online_sample(store, events, sample, seed)
        return check_skew(store, served, online, EventCounts(events)).to_dict()
    finally:
        store.close()


@contextmanager
def backfill_progress(show: bool, label: str) -> Iterator[BackfillProgress]:
    """A backfill's progress bar on stderr, labelled `label`; nothing shown unless `show`."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not show) as progress:
        task = progress.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, advance=done, total=total)

        yield tick
