"""Cold-start tiers: how many interactions put a shopper in which tier, and how live
interactions move a shopper from popularity to content to collaborative filtering."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shopper.domain.model import RankingModel
from shopper.domain.recommender import LiveInteraction, build_profile, recommend
from shopper.domain.tier import Tier, TierThresholds, tier_of
from shopper.training.fit import fit
from tests.model_factories import SHOES, two_taste_shop

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> RankingModel:
    return fit(two_taste_shop())


@pytest.mark.parametrize(
    ("interactions", "tier"),
    [(0, Tier.ANONYMOUS), (1, Tier.FEW), (9, Tier.FEW), (10, Tier.MANY), (500, Tier.MANY)],
)
def test_default_thresholds_are_1_and_10(interactions: int, tier: Tier) -> None:
    assert tier_of(interactions) is tier


@pytest.mark.parametrize(
    ("interactions", "tier"),
    [(2, Tier.ANONYMOUS), (3, Tier.FEW), (4, Tier.FEW), (5, Tier.MANY)],
)
def test_custom_thresholds_move_the_boundaries(interactions: int, tier: Tier) -> None:
    assert tier_of(interactions, TierThresholds(few_from=3, many_from=5)) is tier


def test_equal_thresholds_skip_the_few_tier() -> None:
    same = TierThresholds(few_from=4, many_from=4)
    assert [tier_of(n, same) for n in (3, 4)] == [Tier.ANONYMOUS, Tier.MANY]


@pytest.mark.parametrize(("few_from", "many_from"), [(0, 10), (-1, 3), (5, 4)])
def test_thresholds_out_of_order_are_rejected(few_from: int, many_from: int) -> None:
    with pytest.raises(ValueError, match="few_from"):
        TierThresholds(few_from=few_from, many_from=many_from)


def shoe_views(count: int, now: float) -> list[LiveInteraction]:
    return [LiveInteraction(SHOES[i % len(SHOES)], 1.0, now - 60 * (i + 1)) for i in range(count)]


@pytest.mark.parametrize(
    ("live", "tier", "lead"),
    [(0, Tier.ANONYMOUS, "popularity"), (3, Tier.FEW, "content"), (12, Tier.MANY, "collaborative")],
)
def test_live_interactions_move_an_unknown_shopper_up_the_tiers(
    model: RankingModel, live: int, tier: Tier, lead: str
) -> None:
    now = model.trained_until + 3600
    views = shoe_views(live, now)
    profile = build_profile(model, None, now, live=views, live_count=len(views))

    ranked = recommend(model, profile, 5, now)

    assert (ranked.tier, ranked.model) == (tier, lead)
    assert ranked.items


def test_a_known_shopper_counts_trained_and_live_interactions(model: RankingModel) -> None:
    now = model.trained_until + 3600
    trained_only = build_profile(model, "u:s03", now)  # six interactions in training
    with_live = build_profile(model, "u:s03", now, live=shoe_views(4, now), live_count=4)

    assert trained_only.interactions == 6
    assert recommend(model, trained_only, 5, now).tier is Tier.FEW
    assert recommend(model, with_live, 5, now).tier is Tier.MANY


def test_live_interactions_the_model_already_saw_are_not_counted_twice(
    model: RankingModel,
) -> None:
    now = model.trained_until + 3600
    trained = build_profile(model, "u:s03", now)
    seen = [LiveInteraction(SHOES[0], 5.0, model.trained_until - 1)]

    again = build_profile(model, "u:s03", now, live=seen)

    assert again.interest.tolist() == trained.interest.tolist()


def test_the_models_thresholds_decide_the_tier(model: RankingModel) -> None:
    strict = replace(model, settings=replace(model.settings, thresholds=TierThresholds(5, 20)))
    now = model.trained_until + 3600
    views = shoe_views(12, now)
    profile = build_profile(strict, None, now, live=views, live_count=len(views))

    assert recommend(strict, profile, 5, now).tier is Tier.FEW
