"""Training and offline evaluation: neighbour lists, metrics, targets, fitting, tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopper.domain.model import RankingModel, Repurchase
from shopper.domain.tier import LEAD_MODEL, Tier
from shopper.training.data import Interactions
from shopper.training.evaluation import Scores, target_types, targets, time_split
from shopper.training.fit import fit, top_neighbours
from shopper.training.pipeline import evaluate, train
from shopper.training.tuning import tune_blend, validation_days
from tests.model_factories import (
    DAY,
    HOUR,
    SHOES,
    T0,
    catalog_of,
    event,
    shop_data,
    two_taste_catalog,
    two_taste_shop,
)

pytestmark = pytest.mark.usefixtures("one_thread")


COLLABORATIVE = {"ease", "itemknn", "als"}


def lead_weight(weights: dict[str, float], tier: Tier) -> float:
    lead = LEAD_MODEL[tier]
    names = COLLABORATIVE if lead == "collaborative" else {lead}
    return max(weights.get(n, 0.0) for n in names)


# --- top_neighbours ---------------------------------------------------------------------

SIMILARITY = np.array(
    [
        [1.0, 0.9, 0.2, 0.0],
        [0.9, 1.0, 0.5, -0.3],
        [0.2, 0.5, 1.0, 0.0],
        [0.0, -0.3, 0.0, 1.0],
    ]
)


def test_top_neighbours_keeps_the_best_n_without_self_padded_with_minus_one() -> None:
    # chunk=3 splits the 4 rows over two chunks.
    got = top_neighbours(lambda rows: SIMILARITY[rows], 4, 2, chunk=3)

    assert got.index.tolist() == [[1, 2], [0, 2], [1, 0], [-1, -1]]
    assert np.allclose(got.weight, [[0.9, 0.2], [0.9, 0.5], [0.5, 0.2], [0.0, 0.0]])


def test_top_neighbours_never_keeps_more_than_the_other_items() -> None:
    got = top_neighbours(lambda rows: SIMILARITY[rows], 4, 100)

    assert got.index.shape == (4, 3)
    assert got.index.tolist()[1] == [0, 2, -1]  # 0.9, 0.5; the negative one left out
    assert all(i not in row for i, row in enumerate(got.index.tolist()))
    assert (np.diff(got.weight, axis=1) <= 0).all()


def test_top_neighbours_of_a_single_item_is_empty() -> None:
    got = top_neighbours(lambda rows: np.ones((len(rows), 1)), 1, 10)
    assert got.index.tolist() == [[-1]]


# --- metrics ----------------------------------------------------------------------------


def test_scores_add_a_hand_computed_list() -> None:
    scores = Scores()
    # Hits at rank 2 ("b"); "d" is relevant but below k; "x" never listed.
    scores.add(["a", "b", "c", "d"], frozenset({"b", "d", "x"}), k=3)

    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert scores.n == 1
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.ndcg == pytest.approx((1 / math.log2(3)) / ideal)
    assert scores.mrr == pytest.approx(1 / 2)
    assert scores.shown == {"a", "b", "c"}


def test_scores_summary_averages_over_shoppers() -> None:
    scores = Scores()
    scores.add(["a", "b", "c"], frozenset({"b", "d", "x"}), k=3)  # recall 1/3, mrr 1/2
    scores.add(["e", "f"], frozenset({"e"}), k=3)  # recall 1, ndcg 1, mrr 1
    scores.add(["g"], frozenset({"z"}), k=3)  # a miss: all 0

    summary = scores.summary(n_items=14)

    recalls = [1 / 3, 1.0, 0.0]
    se = math.sqrt(np.var(recalls) / 3)
    ndcgs = [(1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5), 1.0, 0.0]
    assert summary == {
        "users": 3,
        "recall": round(sum(recalls) / 3, 4),
        "recall_se": round(se, 4),
        "ndcg": round(sum(ndcgs) / 3, 4),
        "ndcg_se": round(math.sqrt(np.var(ndcgs) / 3), 4),
        "mrr": round(1.5 / 3, 4),
        "coverage": round(6 / 14, 4),
    }
    assert Scores().summary(14)["users"] == 0


# --- targets ----------------------------------------------------------------------------


@pytest.fixture
def history() -> Interactions:
    """u:1 bought shoe-1 before the test window; u:2 bought shoe-2."""
    rows = [
        event("u:1", "shoe-1", T0, "purchase"),
        event("u:2", "shoe-2", T0, "purchase"),
        event("u:3", "shoe-3", T0, "view"),
    ]
    return shop_data(rows, two_taste_catalog())


def window_of(*rows: tuple[object, ...]) -> Interactions:
    return shop_data(rows, two_taste_catalog())


def test_exclude_drops_what_a_shopper_bought_before(history: Interactions) -> None:
    window = window_of(
        event("u:1", "shoe-1", T0 + DAY, "purchase", "GB"),
        event("u:1", "shoe-4", T0 + DAY, "purchase", "GB"),
        event("u:2", "shoe-2", T0 + DAY, "purchase"),  # only a repeat: no target
        event("u:3", "not-in-catalog", T0 + DAY, "purchase"),  # unknown item: no target
    ).events

    got = targets(history, window, Repurchase.EXCLUDE)

    assert [(t.subject, t.relevant, t.segments) for t in got] == [
        # The context the shopper came in with: country, and the hour of day (UTC 22:13).
        ("u:1", frozenset({"shoe-4"}), ("country:gb", "hour:18-23"))
    ]


def test_allow_keeps_repeat_purchases(history: Interactions) -> None:
    window = window_of(
        event("u:1", "shoe-1", T0 + DAY, "purchase"),
        event("u:1", "shoe-4", T0 + DAY, "purchase"),
        event("u:2", "shoe-2", T0 + DAY, "purchase"),
    ).events

    got = targets(history, window, Repurchase.ALLOW)

    assert [(t.subject, t.relevant) for t in got] == [
        ("u:1", frozenset({"shoe-1", "shoe-4"})),
        ("u:2", frozenset({"shoe-2"})),
    ]


def test_purchases_are_the_targets_when_enough_shoppers_buy() -> None:
    buyers = [event(f"u:{n}", "shoe-1", T0, "purchase") for n in range(20)]
    viewers = [event("u:v", "shoe-2", T0, "view")]
    assert target_types(window_of(*buyers, *viewers).events) == {"purchase"}
    assert target_types(window_of(*buyers[:19], *viewers).events) == {"purchase", "view"}


def test_time_split_tests_on_the_last_days() -> None:
    data = window_of(*(event("u:1", SHOES[n % 5], T0 + n * DAY) for n in range(10)))

    train_part, window, cut = time_split(data, days=3)

    assert train_part.events.ts.max() < cut <= window.ts.min()
    assert len(window) == 3 and len(train_part.events) == 7
    assert validation_days(data, wanted=30) == pytest.approx(9 / 4)


def test_the_validation_window_holds_a_quarter_of_the_events_where_they_crowd_late() -> None:
    # Ten events over the first day, thirty in the last hour of day 9.
    early = [event("u:1", SHOES[n % 5], T0 + n * 3600) for n in range(10)]
    late = [event("u:2", SHOES[n % 5], T0 + 9 * DAY - n * 60) for n in range(30)]
    data = window_of(*early, *late)

    days = validation_days(data, wanted=30)

    _, window, _ = time_split(data, days)
    assert days < 1 / 24 and len(window) == pytest.approx(10, abs=1)


# --- fit --------------------------------------------------------------------------------


def test_fit_dates_items_missing_from_the_catalog_by_their_first_event() -> None:
    catalog = catalog_of([("shoe-1", "sprint running shoe", T0 - DAY)])
    data = shop_data(
        [event("u:1", "shoe-1", T0, country="DE"), event("u:1", "shoe-9", T0 + HOUR, country="DE")],
        catalog,
    )

    model = fit(data)

    assert model.item_ids == ("shoe-1", "shoe-9")
    assert model.listed_at.tolist() == [T0 - DAY, T0 + HOUR]
    assert model.has_behaviour.tolist() == [True, True]
    assert model.histories.segments == (("country:de",),)
    assert model.histories.interactions.tolist() == [2]


# --- tuning -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop() -> Interactions:
    return two_taste_shop()


@pytest.fixture(scope="module")
def model(shop: Interactions) -> RankingModel:
    return fit(shop)


@pytest.mark.parametrize("tier", list(Tier))
def test_a_tier_without_validation_shoppers_keeps_its_lead_model(
    model: RankingModel, tier: Tier
) -> None:
    blend, _ = tune_blend([(model, [])], tier, k=5)
    assert lead_weight(dict(blend.weights), tier) > 0


def test_train_tunes_a_blend_led_by_each_tiers_model(shop: Interactions) -> None:
    trained = train(shop, Repurchase.ALLOW, k=3, version="v-test")

    assert set(trained.blends) == set(Tier)
    for tier, blend in trained.blends.items():
        assert lead_weight(dict(blend.weights), tier) > 0, (tier, blend)
    assert "own" in trained.blends[Tier.FEW].weights  # tuning weighs a shopper's own repeats
    assert (trained.version, trained.settings.repurchase) == ("v-test", Repurchase.ALLOW)
    validation = trained.metadata["validation"]
    assert validation["validation_shoppers"] >= validation["with_history"] > 0
    for setting in ("ease_lambda", "als", "own_half_life_days", "segment_weight"):
        assert validation[setting]["chosen"] in validation[setting]["tried"]
    assert trained.metadata["settings"]["ease_lambda"] in (100.0, 300.0, 900.0)


def test_evaluate_measures_every_model_and_the_tiered_system(shop: Interactions) -> None:
    report = evaluate(shop, test_days=5, k=3)

    models = report["models"]
    assert set(models) == {"popularity", "content", "ease", "itemknn", "als", "shopper"}
    assert report["test_shoppers"] == models["shopper"]["overall"]["users"] > 0
    # Shoppers keep to their cluster: their tier's model beats global taste.
    assert models["shopper"]["overall"]["recall"] > models["popularity"]["overall"]["recall"]
    assert set(models["shopper"]["tiers"]) == {t.value for t in Tier}
    for tier in Tier:
        assert lead_weight(report["blends"][tier.value], tier) > 0, report["blends"]
