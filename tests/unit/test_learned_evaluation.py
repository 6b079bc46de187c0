"""The learned ranker in the purchases protocol and in training: its lists reorder the
served blend's candidates from one point-in-time read of the feature store, its paired
difference with the tiered system, and a model trained without it when it cannot be
fitted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.domain.features.spec import PRODUCT_STATS, USER_VIEWS, FeatureRow
from shopper.domain.learned import FEATURE_NAMES, LEARNED, Matrix
from shopper.domain.model import RankingModel, Vector
from shopper.ports.feature_store import PointInTime
from shopper.training.data import Interactions
from shopper.training.evaluation import (
    Target,
    learned_lists,
    measure_lists,
    paired_difference,
    served,
)
from shopper.training.pipeline import train
from tests.model_factories import ranked_model, two_taste_shop

pytestmark = pytest.mark.usefixtures("one_thread")
RANK = FEATURE_NAMES.index("blend_rank")


class ByBlendRank:
    """Scores each candidate by its place in the blend's order, times `sign`: -1 keeps the
    blend's order, +1 reverses it."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def predict(self, features: Matrix) -> Vector:
        return self.sign * features[:, RANK].astype(np.float64)


class CountingStore(InMemoryFeatureStore):
    """The in-memory store, recording every point-in-time read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, list[PointInTime]]] = []

    def historical(self, view: str, requests: Sequence[PointInTime]) -> list[FeatureRow | None]:
        self.reads.append((view, list(requests)))
        return super().historical(view, requests)


@pytest.fixture(scope="module")
def model() -> RankingModel:
    return ranked_model("v-learned")


def scored_by(model: RankingModel, sign: float) -> RankingModel:
    assert model.ranker is not None
    return replace(model, ranker=replace(model.ranker, scorer=ByBlendRank(sign), candidates=12))


def test_learned_lists_reorder_the_served_candidates_from_one_read_per_view(
    model: RankingModel,
) -> None:
    tests = [
        Target(subject, frozenset({"sku-1"}), ("country:gb",))
        for subject in list(model.histories.subjects)[:6]
    ] + [Target("u:never-seen", frozenset({"sku-2"}))]
    store = CountingStore()
    at = model.trained_until + 1.0

    keeping = learned_lists(scored_by(model, -1.0), tests, 5, store, at)
    reversing = learned_lists(scored_by(model, 1.0), tests, 12, store, at)

    for target, kept, reversed_ in zip(tests, keeping, reversing, strict=True):
        blend = served()(model, target, 12)
        ids = [s.item_id for s in blend.items]
        assert [s.item_id for s in kept.items] == ids[:5]
        assert [s.item_id for s in reversed_.items] == ids[::-1]
        assert kept.tier is blend.tier and kept.model == LEARNED
    # Every shopper's rows in one read a view, as of `at`, and their candidates' rows.
    views = [view for view, _ in store.reads]
    assert views == 2 * [*(v.name for v in USER_VIEWS), PRODUCT_STATS.name]
    first_read = store.reads[: len(USER_VIEWS) + 1]
    for view, requests in first_read[:-1]:
        assert requests == [(t.subject, at) for t in tests], view
    assert {ts for _, ts in first_read[-1][1]} == {at}


def test_paired_difference_is_the_mean_of_per_shopper_differences_with_its_error() -> None:
    base = [(0.0, 0.0), (0.5, 0.25), (1.0, 1.0), (0.0, 0.0)]
    better = [(1.0, 0.5), (0.5, 0.25), (1.0, 1.0), (0.5, 0.25)]

    diff = paired_difference(better, base)

    recall = np.array([1.0, 0.0, 0.0, 0.5])
    assert diff["recall"] == pytest.approx(recall.mean(), abs=1e-4)
    assert diff["recall_se"] == pytest.approx(recall.std(ddof=1) / 2, abs=1e-4)
    assert diff["ndcg"] == pytest.approx(0.1875, abs=1e-4)
    assert paired_difference(base, base) == {"recall": 0, "recall_se": 0, "ndcg": 0, "ndcg_se": 0}


def test_measured_lists_give_each_shoppers_recall_and_ndcg_in_order(model: RankingModel) -> None:
    subjects = list(model.histories.subjects)[:3]
    lists = [served()(model, Target(s, frozenset({"x"})), 5) for s in subjects]
    first = lists[0].items[0].item_id
    tests = [Target(s, frozenset({first})) for s in subjects]
    tests[0] = Target(subjects[0], frozenset({first, "never-listed"}))

    metrics, per_shopper = measure_lists(model, tests, lists, 5)

    assert per_shopper[0] == pytest.approx((0.5, 1 / (1 + 1 / np.log2(3))))
    assert metrics["overall"]["users"] == 3
    assert len(per_shopper) == 3


def test_training_goes_on_without_the_ranker_when_it_cannot_be_fitted() -> None:
    data = two_taste_shop(phone_shoppers=4, shoe_shoppers=3)
    visits = Interactions(data.events.assign(session=data.events.subject), data.catalog)

    for shop, reason in ((visits, "too few"), (data, "no visits")):
        model = train(shop, features=InMemoryFeatureStore())  # an empty store: no rows

        assert model.ranker is None
        assert reason in model.metadata["ranker_skipped"]
        assert "ranker" not in model.metadata
        assert model.n_items == 10  # the models are there all the same
