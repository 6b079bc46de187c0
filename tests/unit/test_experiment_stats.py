"""A/B experiment statistics: intervals, challenger-vs-champion tests, the report, the guardrail."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from shopper.domain.experiment_stats import (
    MEAN_TEST,
    METRICS,
    PROPORTION_TEST,
    RATIO_TEST,
    SessionOutcome,
    bootstrap_mean_interval,
    bootstrap_ratio_interval,
    compare_means,
    compare_proportions,
    compare_ratios,
    experiment_report,
    normal_cdf,
    wilson_interval,
)
from shopper.domain.guardrail import GuardrailRule, guardrail_verdict

CHAMPION, CHALLENGER = "champion", "challenger"


def simulate(
    variant: str, sessions: int, *, conversion: float, seed: int, click_rate: float = 0.1
) -> list[SessionOutcome]:
    """Sessions with 1-5 impressions, a per-session click appetite (so clicks cluster by
    session), and lognormal revenue for the sessions that convert."""
    rng = np.random.default_rng(seed)
    impressions = rng.integers(1, 6, sessions)
    clicks = rng.binomial(impressions, rng.beta(1.0, 1.0 / click_rate - 1.0, sessions))
    converted = rng.random(sessions) < conversion
    carted = converted | (rng.random(sessions) < 0.1)
    revenue = np.where(converted, rng.lognormal(3.0, 1.2, sessions), 0.0)
    return [
        SessionOutcome(variant, int(i), int(c), bool(a), bool(v), float(r))
        for i, c, a, v, r in zip(impressions, clicks, carted, converted, revenue, strict=True)
    ]


def ab_report(
    champion_rate: float, challenger_rate: float, seed: int = 0, resamples: int = 2000
) -> dict[str, Any]:
    """4,000 sessions per arm; ``resamples`` does not touch the z-tested conversion rate."""
    outcomes = simulate(CHAMPION, 4000, conversion=champion_rate, seed=seed + 1)
    outcomes += simulate(CHALLENGER, 4000, conversion=challenger_rate, seed=seed + 2)
    return experiment_report(outcomes, [CHAMPION, CHALLENGER], CHAMPION, resamples=resamples)


def heavy_tailed_revenue(sessions: int, seed: int, lift: float = 1.0) -> list[float]:
    """5% of sessions buy, for a lognormal amount (times ``lift``); the rest spend nothing."""
    rng = np.random.default_rng(seed)
    buys = rng.random(sessions) < 0.05
    return [float(x) for x in np.where(buys, rng.lognormal(3.0, 1.2, sessions) * lift, 0.0)]


def vs_champion(report: dict[str, Any], variant: str, metric: str) -> dict[str, Any]:
    entry = next(e for e in report["variants"] if e["name"] == variant)
    comparison: dict[str, Any] = entry["vs_champion"][metric]
    return comparison


@pytest.fixture(scope="module")
def worse_report() -> dict[str, Any]:
    """Champion converts 10% of sessions, the challenger 5%, over 4,000 sessions each."""
    return ab_report(0.10, 0.05)


# --- intervals and tests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval_matches_textbook_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    interval = wilson_interval(successes, trials)
    assert interval.value == pytest.approx(successes / trials)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)


def test_normal_cdf_matches_tables() -> None:
    assert normal_cdf(0.0) == pytest.approx(0.5)
    assert normal_cdf(1.96) == pytest.approx(0.975002, abs=1e-6)
    assert normal_cdf(-1.0) == pytest.approx(0.158655, abs=1e-6)


def test_z_test_p_value_matches_a_hand_computation() -> None:
    # 100/1000 vs 130/1000: pooled p = 0.115, SE = sqrt(0.115 * 0.885 * 2/1000) = 0.0142671,
    # z = 0.03 / SE = 2.10274, two-sided p = 2 * (1 - Phi(z)) = 0.035488.
    comparison = compare_proportions("conversion_rate", 100, 1000, 130, 1000)
    assert comparison.test == PROPORTION_TEST
    assert comparison.difference == pytest.approx(0.03)
    assert comparison.p_value == pytest.approx(0.035488, abs=1e-6)
    assert comparison.significant
    assert not compare_proportions("conversion_rate", 100, 1000, 130, 1000, 0.99).significant


def test_difference_interval_is_newcombes_hybrid_score_interval() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a), method 10.
    comparison = compare_proportions("conversion_rate", 48, 80, 56, 70)
    assert comparison.difference == pytest.approx(0.2)
    assert comparison.low == pytest.approx(0.0524, abs=5e-5)
    assert comparison.high == pytest.approx(0.3339, abs=5e-5)


def test_identical_all_zero_arms_have_p_value_one() -> None:
    comparison = compare_proportions("conversion_rate", 0, 50, 0, 80)
    assert comparison.p_value == 1.0
    assert not comparison.significant


def test_bootstrap_interval_of_heavy_tailed_revenue_is_skewed_right() -> None:
    revenue = heavy_tailed_revenue(2000, seed=3)
    interval = bootstrap_mean_interval(revenue, seed=1)
    assert interval.value == pytest.approx(float(np.mean(revenue)))
    assert interval.low < interval.value < interval.high
    # A symmetric (t) interval would put the mean in the middle; a right tail pulls it left.
    assert interval.high - interval.value > interval.value - interval.low
    assert bootstrap_mean_interval(revenue, seed=1) == interval


def test_cluster_bootstrap_widens_ctr_interval_when_clicks_cluster_by_session() -> None:
    # 200 sessions of 10 impressions: half click every impression, half none.
    clicks = [10.0, 0.0] * 100
    impressions = [10.0] * 200
    cluster = bootstrap_ratio_interval(clicks, impressions, seed=0)
    naive = wilson_interval(1000, 2000)  # as if the 2,000 impressions were independent
    assert cluster.value == pytest.approx(0.5)
    assert cluster.high - cluster.low > 2.5 * (naive.high - naive.low)


def test_resampling_refuses_empty_or_ragged_samples() -> None:
    with pytest.raises(ValueError, match="at least one session"):
        bootstrap_mean_interval([])
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ratio_interval([1.0, 2.0], [3.0])
    with pytest.raises(ValueError, match="at least one session"):
        compare_means("revenue_per_session", [1.0], [])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean_interval([1.0], resamples=0)


def test_ctr_comparison_detects_a_lift_in_clicks() -> None:
    base = simulate(CHAMPION, 1500, conversion=0.1, seed=5, click_rate=0.10)
    lifted = simulate(CHALLENGER, 1500, conversion=0.1, seed=6, click_rate=0.15)
    comparison = compare_ratios(
        "ctr",
        [s.clicks for s in base], [s.impressions for s in base],
        [s.clicks for s in lifted], [s.impressions for s in lifted],
    )  # fmt: skip
    assert comparison.test == RATIO_TEST
    assert comparison.significant
    assert 0 < comparison.low < comparison.difference < comparison.high


def test_revenue_lift_on_heavy_tailed_sessions_is_detected() -> None:
    base, lifted = heavy_tailed_revenue(2000, seed=11), heavy_tailed_revenue(2000, 12, lift=3.0)
    comparison = compare_means("revenue_per_session", base, lifted, seed=0)
    assert comparison.test == MEAN_TEST
    assert comparison.significant
    assert comparison.p_value < 0.01
    assert 0 < comparison.low < comparison.difference < comparison.high


def test_revenue_without_a_lift_is_not_significant() -> None:
    base, same = heavy_tailed_revenue(2000, seed=11), heavy_tailed_revenue(2000, seed=12)
    comparison = compare_means("revenue_per_session", base, same, seed=0)
    assert not comparison.significant
    assert comparison.p_value > 0.05
    assert comparison.low < 0 < comparison.high


# --- the report --------------------------------------------------------------------------------


def test_report_has_the_documented_shape() -> None:
    outcomes = [
        SessionOutcome(CHAMPION, 3, 1, True, True, 20.0),
        SessionOutcome(CHAMPION, 2, 0, False, False, 0.0),
        SessionOutcome(CHALLENGER, 4, 2, True, False, 0.0),
        SessionOutcome("retired", 9, 9, True, True, 999.0),  # not in `variants`: ignored
        SessionOutcome(CHALLENGER, 1, 0, False, False, 0.0),
        SessionOutcome(CHAMPION, 1, 1, True, False, 0.0),
    ]
    report = experiment_report(outcomes, [CHALLENGER, CHAMPION], CHAMPION, confidence=0.9)
    json.dumps(report, allow_nan=False)  # JSON-ready: no NaN, no numpy types
    assert list(report) == ["champion", "confidence", "variants"]
    assert (report["champion"], report["confidence"]) == (CHAMPION, 0.9)
    challenger, champion = report["variants"]
    assert [challenger["name"], champion["name"]] == [CHALLENGER, CHAMPION]
    assert list(champion) == [
        "name", "sessions", "impressions", "clicks", "carted_sessions", "converted_sessions",
        "revenue", *METRICS, "vs_champion",
    ]  # fmt: skip
    assert champion["sessions"] == 3 and champion["impressions"] == 6 and champion["clicks"] == 2
    assert (champion["carted_sessions"], champion["converted_sessions"]) == (2, 1)
    assert champion["revenue"] == 20.0 and champion["vs_champion"] is None
    assert champion["ctr"]["value"] == round(2 / 6, 6)
    assert champion["revenue_per_session"]["value"] == round(20 / 3, 6)
    assert champion["conversion_rate"] == {
        "value": round(1 / 3, 6),
        "low": round(wilson_interval(1, 3, 0.9).low, 6),
        "high": round(wilson_interval(1, 3, 0.9).high, 6),
    }
    assert set(challenger["vs_champion"]) == set(METRICS)
    assert list(challenger["vs_champion"]["ctr"]) == [
        "test", "difference", "low", "high", "p_value", "significant",
    ]  # fmt: skip
    assert challenger["vs_champion"]["add_to_cart_rate"]["difference"] == round(1 / 2 - 2 / 3, 6)


def test_a_variant_without_sessions_gets_nulls() -> None:
    outcomes = simulate(CHAMPION, 50, conversion=0.1, seed=1)
    outcomes += simulate(CHALLENGER, 50, conversion=0.1, seed=2)
    report = experiment_report(outcomes, [CHAMPION, CHALLENGER, "empty"], CHAMPION, resamples=200)
    json.dumps(report, allow_nan=False)
    empty = report["variants"][2]
    assert (empty["name"], empty["sessions"], empty["revenue"]) == ("empty", 0, 0.0)
    assert all(empty[metric] is None for metric in METRICS)
    assert empty["vs_champion"] == dict.fromkeys(METRICS)
    assert report["variants"][1]["vs_champion"]["conversion_rate"] is not None
    assert "empty" not in guardrail_verdict(report, GuardrailRule(min_sessions=0, alpha=0.5))


def test_a_champion_without_sessions_leaves_nothing_to_compare() -> None:
    outcomes = simulate(CHALLENGER, 50, conversion=0.1, seed=2)
    report = experiment_report(outcomes, [CHAMPION, CHALLENGER], CHAMPION, resamples=200)
    assert report["variants"][1]["vs_champion"] == dict.fromkeys(METRICS)
    assert report["variants"][1]["conversion_rate"] is not None


def test_a_variant_without_impressions_has_no_ctr() -> None:
    outcomes = [SessionOutcome(CHAMPION, 2, 1, False, False, 0.0)] * 5
    outcomes += [SessionOutcome(CHALLENGER, 0, 0, False, False, 0.0)] * 5
    report = experiment_report(outcomes, [CHAMPION, CHALLENGER], CHAMPION, resamples=100)
    json.dumps(report, allow_nan=False)
    assert report["variants"][1]["ctr"] is None
    assert report["variants"][1]["vs_champion"]["ctr"] is None


def test_same_seed_gives_the_same_report_and_another_seed_moves_only_resampling() -> None:
    outcomes = simulate(CHAMPION, 300, conversion=0.1, seed=1)
    outcomes += simulate(CHALLENGER, 300, conversion=0.12, seed=2)
    variants = [CHAMPION, CHALLENGER]
    first = experiment_report(outcomes, variants, CHAMPION, seed=7)
    assert experiment_report(outcomes, variants, CHAMPION, seed=7) == first
    other = experiment_report(outcomes, variants, CHAMPION, seed=8)
    assert (
        other["variants"][1]["revenue_per_session"] != first["variants"][1]["revenue_per_session"]
    )
    assert other["variants"][1]["conversion_rate"] == first["variants"][1]["conversion_rate"]


def test_report_refuses_a_champion_outside_the_variants() -> None:
    with pytest.raises(ValueError, match="champion"):
        experiment_report([], ["a", "b"], "c")
    with pytest.raises(ValueError, match="distinct"):
        experiment_report([], ["a", "a"], "a")


# --- the guardrail ------------------------------------------------------------------------------


def test_halved_conversion_is_significantly_worse_and_stopped(worse_report: dict[str, Any]) -> None:
    conversion = vs_champion(worse_report, CHALLENGER, "conversion_rate")
    assert conversion["significant"] and conversion["difference"] < 0 < -conversion["high"]
    verdict = guardrail_verdict(worse_report, GuardrailRule())
    assert list(verdict) == [CHALLENGER]
    reason = verdict[CHALLENGER]
    champion, challenger = worse_report["variants"]
    for fragment in (
        "conversion_rate",
        f"{challenger['conversion_rate']['value']:.2%}",
        f"{champion['conversion_rate']['value']:.2%}",
        f"{conversion['difference'] * 100:+.2f} pp",
        f"{conversion['low'] * 100:+.2f} pp",
        "p < 1e-06",
        PROPORTION_TEST,
        "sessions 4000 vs 4000",
    ):
        assert fragment in reason


def test_too_few_sessions_are_not_stopped_even_when_worse(worse_report: dict[str, Any]) -> None:
    assert guardrail_verdict(worse_report, GuardrailRule(min_sessions=4001)) == {}
    assert guardrail_verdict(worse_report, GuardrailRule(min_sessions=4000)) != {}


def test_guardrail_judges_only_its_metric(worse_report: dict[str, Any]) -> None:
    # Same clicks in both arms: a CTR guardrail has nothing to object to.
    assert guardrail_verdict(worse_report, GuardrailRule(metric="ctr")) == {}
    # Half the buyers, half the revenue: p = 0.016 here, so stopped at alpha 0.05, not at 0.01.
    rule = GuardrailRule(metric="revenue_per_session", alpha=0.05)
    assert guardrail_verdict(worse_report, GuardrailRule(metric="revenue_per_session")) == {}
    revenue = guardrail_verdict(worse_report, rule)
    assert "revenue_per_session" in revenue[CHALLENGER]
    assert MEAN_TEST in revenue[CHALLENGER]


def test_a_better_challenger_is_significant_and_kept() -> None:
    report = ab_report(0.10, 0.14, resamples=300)
    conversion = vs_champion(report, CHALLENGER, "conversion_rate")
    assert conversion["significant"] and conversion["low"] > 0
    assert guardrail_verdict(report, GuardrailRule()) == {}


def test_equal_rates_are_not_significant_and_kept() -> None:
    report = ab_report(0.10, 0.10, seed=20, resamples=300)
    conversion = vs_champion(report, CHALLENGER, "conversion_rate")
    assert not conversion["significant"]
    assert conversion["low"] < 0 < conversion["high"]
    assert guardrail_verdict(report, GuardrailRule()) == {}


def test_guardrail_rule_refuses_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match=r"unknown guardrail metric 'aov'.*conversion_rate"):
        GuardrailRule(metric="aov")
    with pytest.raises(ValueError, match="alpha"):
        GuardrailRule(alpha=0.0)


def test_p_values_are_probabilities(worse_report: dict[str, Any]) -> None:
    for metric in METRICS:
        p_value = vs_champion(worse_report, CHALLENGER, metric)["p_value"]
        assert 0.0 <= p_value <= 1.0 and not math.isnan(p_value)
