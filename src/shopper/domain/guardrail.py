"""The experiment guardrail's rule and verdict: which challengers to stop, and why, from
an experiment report (`domain.experiment_stats.experiment_report`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shopper.domain.experiment_stats import METRICS, RATE_METRICS


@dataclass(frozen=True, slots=True)
class GuardrailRule:
    """Stop a challenger that is significantly worse than the champion on ``metric``.

    Only challengers with at least ``min_sessions`` sessions are judged, so that an arm is not
    stopped on a handful of early sessions; ``alpha`` is the significance level.
    """

    metric: str = "conversion_rate"
    min_sessions: int = 200
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(
                f"unknown guardrail metric {self.metric!r}; expected one of {', '.join(METRICS)}"
            )
        if self.min_sessions < 0:
            raise ValueError(f"min_sessions must be >= 0, got {self.min_sessions}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


def guardrail_verdict(report: Mapping[str, Any], rule: GuardrailRule) -> dict[str, str]:
    """The challengers to stop, each mapped to the reason: those with at least
    ``rule.min_sessions`` sessions that are significantly worse than the champion on
    ``rule.metric`` (difference < 0 and p < ``rule.alpha``)."""
    entries = report["variants"]
    champion = next(entry for entry in entries if entry["name"] == report["champion"])
    return {
        entry["name"]: _stop_reason(entry, champion, rule, float(report["confidence"]))
        for entry in entries
        if entry is not champion and _breaches(entry, rule)
    }


def _breaches(entry: Mapping[str, Any], rule: GuardrailRule) -> bool:
    comparison = (entry["vs_champion"] or {}).get(rule.metric)
    return (
        entry["sessions"] >= rule.min_sessions
        and comparison is not None
        and comparison["p_value"] is not None
        and comparison["difference"] < 0
        and comparison["p_value"] < rule.alpha
    )


def _stop_reason(
    entry: Mapping[str, Any], champion: Mapping[str, Any], rule: GuardrailRule, confidence: float
) -> str:
    metric, comparison = rule.metric, entry["vs_champion"][rule.metric]
    p_value = comparison["p_value"]
    p_text = "p < 1e-06" if p_value < 1e-6 else f"p = {p_value:.2g}"
    rates = f"{_show(metric, entry[metric]['value'])} vs {_show(metric, champion[metric]['value'])}"
    low, high = (_show(metric, comparison[bound], True) for bound in ("low", "high"))
    return (
        f"{metric} is significantly worse than the champion {champion['name']!r}: "
        f"{rates}, difference {_show(metric, comparison['difference'], True)} "
        f"({confidence:.0%} interval {low} to {high}), {p_text} at alpha {rule.alpha:g} "
        f"[{comparison['test']}]; sessions {entry['sessions']} vs {champion['sessions']}"
    )


def _show(metric: str, value: float | None, difference: bool = False) -> str:
    if value is None:
        return "n/a"
    if metric in RATE_METRICS:
        return f"{value * 100:+.2f} pp" if difference else f"{value:.2%}"
    return f"{value:+.4f}" if difference else f"{value:.4f}"
