"""The learned ranker in the processor: it orders each shopper's candidates from the online
feature store, is picked up on promotion, falls back to the blends when the store cannot
be read, logs the vectors it ranked by, and never runs on the page path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest

from shopper.adapters.memory_feature_log import InMemoryFeatureLog
from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.features.pair import PAIR_FEATURES, SHOPPER_ITEM
from shopper.domain.features.spec import FeatureRow
from shopper.domain.learned import FEATURE_NAMES, LEARNED, LearnedRanker, Matrix
from shopper.domain.model import RankingModel, Vector
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList
from shopper.ports.cache import ListKey
from shopper.ports.feature_store import FeatureStore
from shopper.services.processor import Processor
from shopper.services.skew import EventCounts, check_skew
from tests.model_factories import ranked_model, ranking_model
from tests.unit.api_harness import SwitchableApp
from tests.unit.factories import T0, drain, in_catalog, publish, wire

pytestmark = pytest.mark.usefixtures("one_thread")
RANK = FEATURE_NAMES.index("blend_rank")


class ReversedBlend:
    """A scorer that puts the blend's last candidate first: its effect is unmistakable."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, features: Matrix) -> Vector:
        self.calls += 1
        return features[:, RANK].astype(np.float64)


class CountingStore(InMemoryFeatureStore):
    """The in-memory store, counting online reads; `broken` makes them fail."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.broken = False

    def read_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, FeatureRow]]:
        self._count()
        return super().read_users(user_ids)

    def read_user(self, user_id: str) -> dict[str, FeatureRow]:
        self._count()
        return super().read_user(user_id)

    def read_items(self, item_ids: Sequence[str]) -> dict[str, FeatureRow]:
        self._count()
        return super().read_items(item_ids)

    def _count(self) -> None:
        self.reads += 1
        if self.broken:
            raise ConnectionError("feature store down")


@pytest.fixture
def models() -> InMemoryModelStore:
    return InMemoryModelStore()


@pytest.fixture
def features() -> CountingStore:
    return CountingStore()


def make_system(models: InMemoryModelStore, store: FeatureStore | None, **settings: Any) -> System:
    config = load_config(
        {},
        microbatch_wait_s=0,
        popular_refresh_s=0,
        model_poll_s=0.001,
        feature_store="memory" if store is not None else "off",
        feature_log_sample=1.0,
        ranker_feature_wait_s=10.0,  # the batch's rows are online before it is ranked
        **settings,
    )
    system = build_system(config, clock=ManualClock(), models=models)
    in_catalog(system.state)
    if system.features is not None and store is not None:
        system.features.open_store = lambda: store
        system.features.served_log = InMemoryFeatureLog()
    return system


@pytest.fixture
def system(models: InMemoryModelStore, features: CountingStore) -> Iterator[System]:
    built = make_system(models, features)
    yield built
    built.close()


def serve(models: InMemoryModelStore, model: RankingModel) -> None:
    models.save(model)
    models.promote(model.version)


def reversing(model: RankingModel, candidates: int = 12) -> tuple[RankingModel, ReversedBlend]:
    scorer = ReversedBlend()
    ranker = LearnedRanker("reversed", scorer, FEATURE_NAMES, candidates)
    return replace(model, ranker=ranker), scorer


def browse(system: System, processor: Processor, shopper: str, *items: str, at: int = 0) -> None:
    """`items` viewed `at` seconds on (one second apart), the clock moved past them."""
    raws = [
        wire(f"{shopper}-{at + n}", "view", session_id=shopper, item_id=item, ts=T0 + at + n)
        for n, item in enumerate(items)
    ]
    clock = system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(T0 + at + len(items) - clock.now())
    publish(system.event_log, system.config.topic_prefix, *raws)
    drain(system, processor)
    if system.features is not None:
        assert system.features.flush()


def fresh(system: System, subject: str) -> RecommendationList:
    got = system.cache.read_page(ListKey(subject, DEFAULT_VARIANT), []).fresh
    assert got is not None, f"no list for {subject}"
    return got


def blend_order(models: InMemoryModelStore, model: RankingModel, *items: str) -> list[str]:
    """The list the same model writes without its ranker, for the same visit."""
    plain = make_system(models, None)
    try:
        processor = plain.processor()
        serve(models, replace(model, version=model.version + "-plain", ranker=None))
        browse(plain, processor, "a", *items)
        return fresh(plain, "s:a").item_ids()
    finally:
        plain.close()


def test_a_promoted_ranker_orders_the_candidates_without_a_restart(
    system: System, models: InMemoryModelStore
) -> None:
    processor = system.processor()
    serve(models, ranking_model("v1"))
    browse(system, processor, "a", "sku-1", "sku-5")
    assert fresh(system, "s:a").model != LEARNED

    model, scorer = reversing(ranking_model("v2"))
    serve(models, model)
    browse(system, processor, "a", "sku-9", at=2)

    got = fresh(system, "s:a")
    assert got.model == LEARNED and scorer.calls == 1
    assert processor.ranking.stats.model_version == "v2"
    # The blend's 12 candidates, last first (those the visit hid are not candidates).
    want = blend_order(models, model, "sku-1", "sku-5", "sku-9")
    assert got.item_ids() == list(reversed(want[:12]))
    assert [s.score for s in got.items] == sorted((s.score for s in got.items), reverse=True)
    # One batched read of the batch's shoppers and one of all their candidates.
    assert processor.ranking.stats.feature_reads == 2


def test_the_ranker_reads_online_features_and_logs_the_vectors_it_ranked_by(
    system: System, models: InMemoryModelStore
) -> None:
    processor = system.processor()
    serve(models, ranked_model("v1"))
    browse(system, processor, "a", "sku-1", "sku-5")
    browse(system, processor, "a", "sku-9", at=2)  # now the store has the shopper's rows

    got = fresh(system, "s:a")
    assert got.model == LEARNED
    assert system.features is not None
    vectors = [r.row for r in system.features.served_log.read() if r.row.view == "shopper_item"]
    last = [v for v in vectors if v.as_of == got.generated_at]
    assert [v.values["item_id"] for v in last] == got.item_ids()[:10]
    assert all(set(PAIR_FEATURES) <= set(v.values) for v in last)
    assert all(v.values["session_items"] == 3.0 for v in last)  # sku-1, sku-5, sku-9
    assert all(isinstance(v.values["user_as_of"], float) for v in last)


def test_no_vector_is_logged_for_a_batch_whose_reads_a_push_overlapped(
    system: System, models: InMemoryModelStore
) -> None:
    """The logged counts must be those of the rows read: a push under way (or finished)
    during the reads leaves them unknown, so the batch logs none (and says so)."""
    processor = system.processor()
    serve(models, ranked_model("v1"))
    browse(system, processor, "a", "sku-1", "sku-5")
    assert system.features is not None
    logged = processor.ranking.stats.vectors_logged
    system.features.pushes += 1  # as if a push had begun and not ended
    browse(system, processor, "a", "sku-9", at=2)

    assert fresh(system, "s:a").model == LEARNED  # ranked all the same
    assert processor.ranking.stats.vectors_logged == logged
    assert processor.ranking.stats.vector_batches_skipped >= 1


def test_a_feature_store_that_cannot_be_read_leaves_the_blends_order(
    system: System, models: InMemoryModelStore, features: CountingStore
) -> None:
    processor = system.processor()
    model, scorer = reversing(ranking_model("v1"))
    serve(models, model)
    features.broken = True

    browse(system, processor, "a", "sku-1", "sku-5")

    got = fresh(system, "s:a")
    assert got.model != LEARNED and scorer.calls == 0
    assert processor.ranking.stats.feature_read_failures == 1
    assert got.item_ids() == blend_order(models, model, "sku-1", "sku-5")[: len(got.items)]


def test_the_page_path_reads_no_feature_and_calls_no_model(
    system: System,
    models: InMemoryModelStore,
    features: CountingStore,
    server: tuple[SwitchableApp, str],
) -> None:
    processor = system.processor()
    model, scorer = reversing(ranking_model("v1"))
    serve(models, model)
    browse(system, processor, "a", "sku-1", "sku-5")
    written = fresh(system, "s:a")
    reads, calls = features.reads, scorer.calls

    switch, url = server
    switch.target = system.app()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(20):
                params = {"session_id": "a", "k": 5}
                body = client.get("/v1/recommendations", params=params).json()
                assert [i["item_id"] for i in body["items"]] == written.item_ids()[:5]
    finally:
        switch.target = None

    assert (features.reads, scorer.calls) == (reads, calls)


def test_check_skew_names_a_pair_feature_changed_in_serving_only(
    system: System,
    models: InMemoryModelStore,
    features: CountingStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processor = system.processor()
    serve(models, ranked_model("v1"))
    catalog = [
        wire(
            f"c-{i}", "item_upsert", ts=T0 - 60, item={"item_id": f"sku-{i}", "category": ["shoes"]}
        )
        for i in range(1, 12)
    ]
    publish(system.event_log, system.config.topic_prefix, *catalog)
    browse(system, processor, "a", "sku-1", "sku-5")
    browse(system, processor, "a", "sku-9", at=2)
    report = _skew(system, features)
    assert report.sources["vectors"] > 0
    assert report.unexplained == 0, report.examples

    # Serving now computes `category_interest` its own way; training's definition stays.
    import shopper.domain.learned as learned

    at = PAIR_FEATURES.index("category_interest")

    def drifted(shopper: Any, items: Any, item_ids: Any) -> Any:
        values = original(shopper, items, item_ids)
        values[:, at] = values[:, at] * 0.5 + 0.25
        return values

    original = learned.pair_matrix
    monkeypatch.setattr(learned, "pair_matrix", drifted)
    browse(system, processor, "a", "sku-2", at=3)

    report = _skew(system, features)
    assert report.unexplained > 0
    named = {k for k, n in report.by_feature.items() if n}
    assert named == {f"{SHOPPER_ITEM.name}:category_interest"}


def _skew(system: System, store: InMemoryFeatureStore) -> Any:
    from shopper.services.feature_backfill import backfill_events

    assert system.features is not None
    events = list(system.features.archive.read())
    backfill_events(events, store)
    return check_skew(store, system.features.served_log.read(), [], EventCounts(events))
