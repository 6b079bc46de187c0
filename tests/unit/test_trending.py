"""The trending detector: a live spike far above what training expected."""

from __future__ import annotations

from shopper.domain.trending import trending_scores

EXPECTED = {f"sku-{i}": 100.0 - i for i in range(50)}


def steady(scale: float = 3.0) -> list[tuple[str, float]]:
    """Live interest in the same proportions as training expected."""
    return [(item, w * scale) for item, w in EXPECTED.items()]


def test_steady_traffic_trends_nothing() -> None:
    assert trending_scores(steady(), EXPECTED) == {}


def test_a_spike_on_an_item_training_rarely_saw_is_trending() -> None:
    live = [*steady(), ("sku-49", 4_000.0)]  # its trained share is the smallest
    trend = trending_scores(live, EXPECTED)
    assert trend == {"sku-49": 1.0}


def test_a_new_item_no_one_saw_in_training_can_trend() -> None:
    live = [*steady(), ("brand-new", 1_500.0)]
    assert set(trending_scores(live, EXPECTED)) == {"brand-new"}


def test_a_best_seller_doubling_with_everything_else_is_not_trending() -> None:
    assert trending_scores(steady(scale=2.0), EXPECTED) == {}


def test_a_blip_below_the_noise_floor_is_ignored() -> None:
    live = [*steady(), ("sku-49", 50.0)]  # lifts its share, but under 2% of all interest
    assert trending_scores(live, EXPECTED) == {}


def test_scores_rank_by_lift() -> None:
    live = [*steady(), ("sku-48", 2_000.0), ("sku-10", 2_000.0)]
    trend = trending_scores(live, EXPECTED)
    assert trend["sku-48"] == 1.0
    assert 0 < trend.get("sku-10", 0.0) < 1.0


def test_no_live_interest_trends_nothing() -> None:
    assert trending_scores([], EXPECTED) == {}
