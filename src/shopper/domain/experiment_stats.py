"""Statistics of A/B experiments: per-variant intervals and challenger-vs-champion tests
(the guardrail that reads them: `domain.guardrail`).

The session is the unit of randomisation and of analysis: every metric is computed from
per-session outcomes, and every resampling method resamples or relabels whole sessions.

Which test each metric uses, and why:

* ``conversion_rate`` and ``add_to_cart_rate`` are one yes/no per session, independent across
  sessions, so the two-proportion z-test applies. Its p-value uses the pooled standard error,
  since the null hypothesis says both arms share one rate. The interval of the difference is
  Newcombe's hybrid score interval (method 10 of Newcombe 1998, built from the two Wilson
  intervals) rather than the Wald interval, which undercovers for rare events such as a
  conversion rate of a few percent. Each arm's own rate gets a Wilson score interval, which
  stays inside [0, 1] and stays sensible at 0 successes.
* ``revenue_per_session`` is mostly zeros (most sessions buy nothing) with a heavy right tail
  (a few large baskets). The t-test leans on a normal sampling distribution of the mean, which
  such data reach only slowly, so the p-value comes from a two-sided permutation test on the
  difference in means (exact under "the variant changes nothing", no assumption on the shape of
  revenue) and the interval from a percentile bootstrap that resamples sessions.
* ``ctr`` is clicks over impressions, both summed over sessions. The impressions of one session
  are correlated (one shopper, one intent), so a binomial test over impressions would understate
  the variance. Sessions are resampled as clusters instead: a cluster bootstrap of the ratio of
  sums for the interval, and a permutation of session labels for the p-value.

Every test calls a difference significant when p < 1 - confidence. The interval is computed
separately from the p-value, so near the boundary the two can disagree. Resampling is seeded
(numpy ``Generator``) so a report is reproducible, and vectorised in batches so that memory
stays bounded whatever the number of sessions.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

METRICS = ("ctr", "add_to_cart_rate", "conversion_rate", "revenue_per_session")
DEFAULT_RESAMPLES = 2_000
PROPORTION_TEST = "two-proportion z-test (pooled SE); Newcombe hybrid score interval"
MEAN_TEST = "permutation test on the difference in means; bootstrap percentile interval"
RATIO_TEST = "session-label permutation test; cluster bootstrap percentile interval"

RATE_METRICS = frozenset({"ctr", "add_to_cart_rate", "conversion_rate"})
# Cells (resamples x sessions) drawn per batch: caps each temporary array at ~16 MB.
_BATCH_CELLS = 1 << 21
# Columns of the per-session matrix that all resampling works on.
_REVENUE, _CLICKS, _IMPRESSIONS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """What one shopping session did, in the experiment arm (variant) its shopper was assigned."""

    variant: str
    impressions: int  # recommendation lists served to the session
    clicks: int  # clicks on recommended items
    carted: bool  # any add-to-cart in the session
    converted: bool  # any purchase in the session
    revenue: float  # sum of price x quantity over the session's purchases (0 if none)


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate and the bounds of its confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """Challenger minus champion on one metric: the difference, its interval and p-value."""

    metric: str
    test: str
    difference: float
    low: float
    high: float
    p_value: float
    significant: bool


def normal_cdf(x: float) -> float:
    """The standard normal cumulative distribution function."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of the proportion ``successes / trials``."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    z = _z(confidence)
    p = successes / trials
    shrink = z * z / trials
    centre = (p + shrink / 2.0) / (1.0 + shrink)
    half = z / (1.0 + shrink) * math.sqrt(p * (1.0 - p) / trials + shrink / (4.0 * trials))
    # At 0 or n successes the bound is exactly 0 or 1; rounding would leave it a hair inside.
    low = 0.0 if successes == 0 else centre - half
    high = 1.0 if successes == trials else centre + half
    return Interval(p, low, high)


def bootstrap_mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval (values resampled)."""
    arm = _Arm(_matrix(revenue=values))
    boot = arm.resample(resamples, np.random.default_rng(seed))
    return _percentile_interval(_mean(arm.observed)[0], _mean(boot), confidence)


def bootstrap_ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """sum(numerators) / sum(denominators) with a cluster bootstrap percentile interval.

    Each (numerator, denominator) pair is one cluster, e.g. one session's clicks and
    impressions; pairs are resampled whole, which keeps the correlation inside a cluster.
    """
    arm = _Arm(_matrix(clicks=numerators, impressions=denominators))
    boot = arm.resample(resamples, np.random.default_rng(seed))
    return _percentile_interval(_ratio(arm.observed)[0], _ratio(boot), confidence)


def compare_proportions(
    metric: str,
    champion_successes: int,
    champion_trials: int,
    challenger_successes: int,
    challenger_trials: int,
    confidence: float = 0.95,
) -> Comparison:
    """Two-proportion z-test (pooled SE) with a Newcombe hybrid score interval."""
    base = wilson_interval(champion_successes, champion_trials, confidence)
    new = wilson_interval(challenger_successes, challenger_trials, confidence)
    difference = new.value - base.value
    # Newcombe's method 10: each bound combines the two arms' Wilson distances on that side.
    low = difference - math.hypot(new.value - new.low, base.high - base.value)
    high = difference + math.hypot(new.high - new.value, base.value - base.low)
    pooled = (champion_successes + challenger_successes) / (champion_trials + challenger_trials)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / champion_trials + 1.0 / challenger_trials))
    # se == 0: both arms are all-0 or all-1, identical, so no evidence of a difference.
    # erfc keeps precision in the far tail, where 2 * (1 - normal_cdf(z)) would round to 0.
    p_value = 1.0 if se == 0.0 else math.erfc(abs(difference / se) / math.sqrt(2.0))
    return Comparison(
        metric, PROPORTION_TEST, difference, low, high, p_value, p_value < 1.0 - confidence
    )


def compare_means(
    metric: str,
    champion_values: Sequence[float],
    challenger_values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Difference in means: a two-sided permutation p-value and a bootstrap percentile interval.

    ``resamples`` is both the number of bootstrap resamples and of permutations.
    """
    arms = _Arm(_matrix(revenue=champion_values)), _Arm(_matrix(revenue=challenger_values))
    pair = _resample_pair(*arms, resamples, np.random.default_rng(seed))
    return pair.compare(metric, MEAN_TEST, _mean, confidence)


def compare_ratios(
    metric: str,
    champion_numerators: Sequence[float],
    champion_denominators: Sequence[float],
    challenger_numerators: Sequence[float],
    challenger_denominators: Sequence[float],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Difference of two ratios of sums over clusters (e.g. CTR over sessions): a cluster
    bootstrap percentile interval and a p-value from permuting cluster labels between arms."""
    arms = (
        _Arm(_matrix(clicks=champion_numerators, impressions=champion_denominators)),
        _Arm(_matrix(clicks=challenger_numerators, impressions=challenger_denominators)),
    )
    pair = _resample_pair(*arms, resamples, np.random.default_rng(seed))
    return pair.compare(metric, RATIO_TEST, _ratio, confidence)


def experiment_report(
    outcomes: Sequence[SessionOutcome],
    variants: Sequence[str],
    champion: str,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """A JSON-ready report: each variant's totals and metric intervals, and each challenger
    compared with the champion. Variants keep the given order; sessions of other variants are
    ignored; a variant without sessions gets null metrics. Floats are rounded to 6 decimals.
    ``resamples`` is the number of bootstrap resamples and of permutations.
    """
    _check_variants(variants, champion)
    _check_confidence(confidence)
    arms = _arms_by_variant(outcomes, variants)
    boots = {name: arm.resample(resamples, _rng(seed, name)) for name, arm in arms.items()}
    entries = [_variant_entry(name, arms[name], boots[name], confidence) for name in variants]
    for entry in entries:
        name = entry["name"]
        if name != champion:
            rng = _rng(seed, champion, name)
            pair = (arms[champion], arms[name]), (boots[champion], boots[name])
            entry["vs_champion"] = _vs_champion(*pair, confidence, resamples, rng)
    return {"champion": champion, "confidence": confidence, "variants": entries}


# --- resampling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sums:
    """Per-session column sums (revenue, clicks, impressions), one row per resample."""

    sums: FloatArray
    sessions: int


@dataclass(frozen=True, slots=True)
class _Arm:
    """One variant's sessions as a (sessions x 3) matrix of revenue, clicks and impressions."""

    data: FloatArray
    carted: int = 0
    converted: int = 0

    @property
    def sessions(self) -> int:
        return int(self.data.shape[0])

    @property
    def observed(self) -> _Sums:
        return _Sums(self.data.sum(axis=0, keepdims=True), self.sessions)

    def resample(self, resamples: int, rng: np.random.Generator) -> _Sums:
        """Column sums of ``resamples`` bootstrap resamples of the sessions."""
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples}")
        n = self.sessions
        if n == 0:
            return _Sums(np.zeros((0, 3)), n)
        columns = np.ascontiguousarray(self.data.T)  # gathering one column at a time is fastest
        parts = []
        for size in _batches(resamples, n):
            picks = rng.integers(0, n, size=(size, n))
            parts.append(np.stack([column[picks].sum(axis=1) for column in columns], axis=1))
        return _Sums(np.concatenate(parts), n)


_Statistic = Callable[[_Sums], FloatArray]


def _mean(sums: _Sums) -> FloatArray:
    return sums.sums[:, _REVENUE] / sums.sessions


def _ratio(sums: _Sums) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):  # no impressions: NaN, dropped later
        return sums.sums[:, _CLICKS] / sums.sums[:, _IMPRESSIONS]


@dataclass(frozen=True, slots=True)
class _Pair:
    """A champion and a challenger, observed, bootstrapped and relabelled under the null."""

    observed: tuple[_Sums, _Sums]
    boot: tuple[_Sums, _Sums]
    null: tuple[_Sums, _Sums]

    def compare(
        self, metric: str, test: str, statistic: _Statistic, confidence: float
    ) -> Comparison:
        """Challenger minus champion on ``statistic``: percentile interval, permutation p."""
        difference = float(statistic(self.observed[1])[0] - statistic(self.observed[0])[0])
        replicates = statistic(self.boot[1]) - statistic(self.boot[0])
        low, high = _percentile_bounds(replicates, confidence)
        p_value = _permutation_p_value(
            difference, statistic(self.null[1]) - statistic(self.null[0])
        )
        return Comparison(metric, test, difference, low, high, p_value, p_value < 1.0 - confidence)


def _resample_pair(
    champion: _Arm,
    challenger: _Arm,
    resamples: int,
    rng: np.random.Generator,
    boots: tuple[_Sums, _Sums] | None = None,
) -> _Pair:
    if boots is None:
        boots = champion.resample(resamples, rng), challenger.resample(resamples, rng)
    null = _relabel(
        np.concatenate([champion.data, challenger.data]), champion.sessions, resamples, rng
    )
    return _Pair((champion.observed, challenger.observed), boots, null)


def _relabel(
    pooled: FloatArray, first: int, permutations: int, rng: np.random.Generator
) -> tuple[_Sums, _Sums]:
    """Column sums of both arms after each random relabelling of the pooled sessions."""
    n = pooled.shape[0]
    labels = np.arange(n) < first
    parts = [
        rng.permuted(np.broadcast_to(labels, (size, n)), axis=1).astype(np.float64) @ pooled
        for size in _batches(permutations, n)
    ]
    sums = np.concatenate(parts) if parts else np.zeros((0, 3))
    return _Sums(sums, first), _Sums(pooled.sum(axis=0) - sums, n - first)


def _percentile_interval(value: float, replicates: FloatArray, confidence: float) -> Interval:
    return Interval(float(value), *_percentile_bounds(replicates, confidence))


def _percentile_bounds(replicates: FloatArray, confidence: float) -> tuple[float, float]:
    _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0 * 100.0
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _permutation_p_value(observed: float, null: FloatArray) -> float:
    if not math.isfinite(observed):
        return math.nan
    finite = np.abs(null[np.isfinite(null)])
    # The relative slack counts relabellings that tie with the observed split up to float
    # rounding (frequent when most values are zero) as at least as extreme.
    extreme = np.count_nonzero(finite >= abs(observed) * (1.0 - 1e-9))
    # +1 on both sides counts the observed labelling itself, so p is never 0.
    return (1 + int(extreme)) / (1 + finite.size)


def _batches(total: int, width: int) -> Iterator[int]:
    rows = max(1, _BATCH_CELLS // max(1, width))
    for start in range(0, total, rows):
        yield min(rows, total - start)


def _rng(seed: int, *names: str) -> np.random.Generator:
    # Seeded by name, not position, so a variant's numbers stay put when variants are added.
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


def _z(confidence: float) -> float:
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _matrix(
    revenue: Sequence[float] | None = None,
    clicks: Sequence[float] | None = None,
    impressions: Sequence[float] | None = None,
) -> FloatArray:
    """The per-session matrix; an omitted column is zeros (generic callers use only some)."""
    n = max(len(c) for c in (revenue, clicks, impressions) if c is not None)
    if n == 0:
        raise ValueError("a sample needs at least one session")
    columns = [
        np.zeros(n) if c is None else np.asarray(c, dtype=np.float64)
        for c in (revenue, clicks, impressions)
    ]
    if any(column.shape != (n,) for column in columns):
        raise ValueError("the columns of a sample must have the same length")
    return np.stack(columns, axis=1)


# --- the report -------------------------------------------------------------------------------


def _check_variants(variants: Sequence[str], champion: str) -> None:
    if len(set(variants)) != len(variants):
        raise ValueError(f"variants must be distinct, got {list(variants)}")
    if champion not in variants:
        raise ValueError(f"champion {champion!r} is not among the variants {list(variants)}")


def _arms_by_variant(
    outcomes: Sequence[SessionOutcome], variants: Sequence[str]
) -> dict[str, _Arm]:
    groups: dict[str, list[SessionOutcome]] = {name: [] for name in variants}
    for outcome in outcomes:
        if outcome.variant in groups:
            groups[outcome.variant].append(outcome)
    return {
        name: _Arm(
            np.array(
                [(o.revenue, o.clicks, o.impressions) for o in group], dtype=np.float64
            ).reshape(-1, 3),
            carted=sum(o.carted for o in group),
            converted=sum(o.converted for o in group),
        )
        for name, group in groups.items()
    }


def _variant_entry(name: str, arm: _Arm, boot: _Sums, confidence: float) -> dict[str, Any]:
    revenue, clicks, impressions = (float(x) for x in arm.observed.sums[0])
    intervals: dict[str, Interval | None] = dict.fromkeys(METRICS)
    if arm.sessions:
        intervals = {
            "ctr": _percentile_interval(_ratio(arm.observed)[0], _ratio(boot), confidence),
            "add_to_cart_rate": wilson_interval(arm.carted, arm.sessions, confidence),
            "conversion_rate": wilson_interval(arm.converted, arm.sessions, confidence),
            "revenue_per_session": _percentile_interval(
                _mean(arm.observed)[0], _mean(boot), confidence
            ),
        }
    return {
        "name": name,
        "sessions": arm.sessions,
        "impressions": round(impressions),
        "clicks": round(clicks),
        "carted_sessions": arm.carted,
        "converted_sessions": arm.converted,
        "revenue": _json_value(revenue),
        **{metric: _interval_json(interval) for metric, interval in intervals.items()},
        "vs_champion": None,
    }


def _vs_champion(
    arms: tuple[_Arm, _Arm],
    boots: tuple[_Sums, _Sums],
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any] | None]:
    champion, challenger = arms
    if champion.sessions == 0 or challenger.sessions == 0:
        return dict.fromkeys(METRICS)
    pair = _resample_pair(champion, challenger, resamples, rng, boots)

    def proportions(metric: str, base: int, new: int) -> Comparison:
        return compare_proportions(
            metric, base, champion.sessions, new, challenger.sessions, confidence
        )

    comparisons = (
        pair.compare("ctr", RATIO_TEST, _ratio, confidence),
        proportions("add_to_cart_rate", champion.carted, challenger.carted),
        proportions("conversion_rate", champion.converted, challenger.converted),
        pair.compare("revenue_per_session", MEAN_TEST, _mean, confidence),
    )
    return {c.metric: _comparison_json(c) for c in comparisons}


def _interval_json(interval: Interval | None) -> dict[str, Any] | None:
    if interval is None or not math.isfinite(interval.value):
        return None  # no sessions, or (for CTR) no impressions: nothing to estimate
    return _json_fields(interval, ("value", "low", "high"))


def _comparison_json(comparison: Comparison) -> dict[str, Any] | None:
    if not math.isfinite(comparison.difference):
        return None
    return _json_fields(comparison, ("test", "difference", "low", "high", "p_value", "significant"))


def _json_fields(value: Interval | Comparison, fields: Sequence[str]) -> dict[str, Any]:
    return {name: _json_value(getattr(value, name)) for name in fields}


def _json_value(value: float | bool | str) -> float | bool | str | None:
    if isinstance(value, bool | str):
        return value
    return round(float(value), 6) if math.isfinite(value) else None
