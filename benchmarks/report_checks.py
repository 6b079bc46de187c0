"""The must-show checks of `make bench`'s report: each figure the README promises, its
bar, what the results measured, and whether it cleared the bar ("not measured" when the
results lack it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.report_plots import dig, median

MODES = {"kafka_redis": "Kafka + Redis", "embedded": "embedded"}
# A comparison with the floor measures the page path only if its pages read Redis: at most
# this share of them answered from the API's copy of the popular lists (Redis late).
COPY_SHARE_MAX = 0.01


@dataclass(frozen=True, slots=True)
class Check:
    """One must-show figure: what, the bar, what was measured, and whether it cleared it
    (None: not measured in these results)."""

    what: str
    target: str
    measured: str
    passed: bool | None


def checks(results: dict[str, Any]) -> list[Check]:
    """Every must-show figure of the README, measured or not."""
    return [
        *(_page_vs_floor(results, n) for n in ("1", "8", "32")),
        _open_loop_p99(results),
        _sync_baseline(results),
        _processor_stopped(results),
        *(_freshness(results, mode) for mode in MODES),
        *(_sold_out(results, mode) for mode in MODES),
        _processor(results, "embedded_events_per_s", "embedded", 5000),
        _processor(results, "kafka_redis_events_per_s", "Kafka + Redis", 3500),
    ]


def _page_vs_floor(results: dict[str, Any], level: str) -> Check:
    ratios = dig(results, "page_load", "levels", level, "ratio_shopper_over_floor") or {}
    rps, p99 = median(ratios.get("req_per_s")), median(ratios.get("p99_ms"))
    what = f"page on Redis vs the floor, {level} connection{'s' if level != '1' else ''}"
    target = ">= 1.0x req/s, <= 1.2x p99"
    if rps is None or p99 is None:
        return Check(what, target, "not measured", None)
    measured = f"{rps:.2f}x req/s, {p99:.2f}x p99"
    # Pages answered from the API's copy (Redis late) are not the page path measured.
    shopper = dig(results, "page_load", "levels", level, "shopper") or {}
    copies = shopper.get("pages_from_copy") or 0  # summed over the repeats
    requests = (median(shopper.get("requests")) or 0) * (dig(results, "page_load", "repeats") or 1)
    if copies > COPY_SHARE_MAX * requests:
        measured += f", {copies:,} of {requests:,.0f} pages from the copy"
        return Check(what, target, measured, False)
    return Check(what, target, measured, rps >= 1.0 and p99 <= 1.2)


def _open_loop_p99(results: dict[str, Any]) -> Check:
    p99 = median(dig(results, "page_load", "open_loop", "1000", "shopper", "p99_ms"))
    what, target = "page p99, open loop at 1,000 req/s", "< 5 ms"
    if p99 is None:
        return Check(what, target, "not measured", None)
    return Check(what, target, f"{p99:.2f} ms", p99 < 5.0)


def _sync_baseline(results: dict[str, Any]) -> Check:
    """At 128 connections (else the peak the results name, else their highest level)."""
    baseline = dig(results, "page_load", "sync_baseline") or {}
    levels = baseline.get("levels") or {}
    peak = baseline.get("p99_ratio_at_peak") or {}
    connections = "128" if "128" in levels else str(peak.get("connections", ""))
    if connections not in levels and levels:
        connections = max(levels, key=int)
    level = levels.get(connections) or {}
    ratio = median(level.get("p99_ratio_over_shopper", peak.get("ratio")))
    what = f"synchronous baseline p99 over shopper's, {connections or 128} connections"
    if ratio is None:
        return Check(what, ">= 50x", "not measured", None)
    bound = level.get("p99_is_lower_bound", peak.get("lower_bound"))
    note = " (a lower bound: its requests failed past its deadline)" if bound else ""
    return Check(what, ">= 50x", f"{ratio:.1f}x{note}", ratio >= 50)


def _processor_stopped(results: dict[str, Any]) -> Check:
    states = dig(results, "freshness", "kafka_redis", "page_by_processor_state") or {}
    ratio = median(dig(states, "p99_over_healthy", "stopped"))
    what, target = "page p99 with the processor stopped, over healthy", "<= 1.2x"
    if ratio is None:
        return Check(what, target, "not measured", None)
    return Check(what, target, f"{ratio:.2f}x", ratio <= 1.2)


def _freshness(results: dict[str, Any], mode: str) -> Check:
    level = dig(results, "freshness", mode, "freshness", "1000") or {}
    p99 = median(level.get("p99_ms"))
    what, target = f"freshness p99 at 1,000 events/s ({MODES[mode]})", "< 1 s, none stale"
    if p99 is None:
        return Check(what, target, "not measured", None)
    never = int(level.get("never_fresh", 0))
    measured = f"{p99:,.0f} ms, {never} of {level.get('probes', '?')} never fresh"
    return Check(what, target, measured, p99 < 1000 and never == 0)


def _sold_out(results: dict[str, Any], mode: str) -> Check:
    sold = dig(results, "freshness", mode, "sold_out") or {}
    worst = median(sold.get("max_ms"))
    what, target = f"sold-out item served after its stock event ({MODES[mode]})", "<= 1 s"
    if worst is None:
        return Check(what, target, "not measured", None)
    measured = f"max {worst:,.0f} ms over {sold.get('items', '?')} items"
    return Check(what, target, measured, worst <= 1000)


def _processor(results: dict[str, Any], key: str, where: str, bar: int) -> Check:
    rate = median(dig(results, "processor", key))
    what, target = f"processor throughput, {where}", f">= {bar:,} events/s"
    if rate is None:
        return Check(what, target, "not measured", None)
    return Check(what, target, f"{rate:,.0f} events/s", rate >= bar)
