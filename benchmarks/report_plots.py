"""The report's plots (matplotlib, Agg): PNGs drawn from saved benchmark results.

Each plot is drawn only when its section is in the results. Spreads ({median, min, max})
are drawn as the median with a bar from min to max.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SERIES = ("shopper", "floor")
STATES = ("healthy", "slow", "stopped")
MODES = {"kafka_redis": "Kafka + Redis", "embedded": "embedded"}
FRESHNESS_TARGET_MS = 1000.0


def draw(results: dict[str, Any], folder: Path) -> list[tuple[str, Path]]:
    """Every plot the results have data for, saved in `folder`: (title, path) each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: list[tuple[str, str, Callable[[Any, dict[str, Any]], bool]]] = [
        ("Page path, closed loop", "page_closed_loop.png", _closed_loop),
        ("Page path, open loop", "page_open_loop.png", _open_loop),
        ("Freshness per event rate", "freshness.png", _freshness),
        ("Page p99 by processor state", "processor_states.png", _states),
    ]
    out = []
    for title, name, plot in plots:
        figure = plt.figure(figsize=(9, 4))
        try:
            if plot(figure, results):
                figure.suptitle(title)
                figure.tight_layout()
                path = folder / name
                # No software or date stamp: the same results draw the same bytes.
                figure.savefig(path, dpi=100, metadata={"Software": None})
                out.append((title, path))
        finally:
            plt.close(figure)
    return out


def _closed_loop(figure: Any, results: dict[str, Any]) -> bool:
    levels = dig(results, "page_load", "levels") or {}
    if not levels:
        return False
    baseline = dig(results, "page_load", "sync_baseline", "levels") or {}
    rps, p99 = figure.subplots(1, 2)
    for name in SERIES:
        _line(rps, levels, (name, "req_per_s"), name)
        _line(p99, levels, (name, "p99_ms"), name)
    if baseline:
        _line(rps, baseline, ("sync_baseline", "req_per_s"), "sync baseline")
        _line(p99, baseline, ("sync_baseline", "p99_ms"), "sync baseline")
        p99.set_yscale("log")
    ticks = sorted(int(n) for n in levels)
    for axes, label in ((rps, "req/s"), (p99, "p99 (ms)")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(ticks, [str(n) for n in ticks])
        axes.minorticks_off()
        axes.set_xlabel("connections")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
    return True


def _open_loop(figure: Any, results: dict[str, Any]) -> bool:
    rates = dig(results, "page_load", "open_loop") or {}
    if not rates:
        return False
    axes = figure.subplots()
    for name in SERIES:
        _line(axes, rates, (name, "p99_ms"), name)
    baseline = dig(results, "page_load", "sync_baseline", "open_loop") or {}
    if baseline:
        nested = any("sync_baseline" in (row or {}) for row in baseline.values())
        path = ("sync_baseline", "p99_ms") if nested else ("p99_ms",)
        _line(axes, baseline, path, "sync baseline")
        axes.set_yscale("log")
    axes.set_xlabel("req/s offered (Poisson arrivals)")
    axes.set_ylabel("p99 (ms)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return True


def _freshness(figure: Any, results: dict[str, Any]) -> bool:
    modes = {m: dig(results, "freshness", m, "freshness") for m in MODES}
    modes = {m: levels for m, levels in modes.items() if levels}
    if not modes:
        return False
    axes = figure.subplots(1, len(modes), squeeze=False)[0]
    for side, (mode, levels) in zip(axes, modes.items(), strict=True):
        labels = [_rate_label(rate, level) for rate, level in levels.items()]
        spots = range(len(labels))
        for offset, metric in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
            values = [median(level.get(metric)) or 0.0 for level in levels.values()]
            side.bar([s + offset for s in spots], values, 0.4, label=metric.split("_")[0])
        side.axhline(FRESHNESS_TARGET_MS, color="grey", linestyle="--", label="1 s")
        side.set_xticks(list(spots), labels)
        side.set_xlabel("events/s")
        side.set_ylabel("accepted to served (ms)")
        side.set_title(MODES[mode])
        side.legend()
    return True


def _states(figure: Any, results: dict[str, Any]) -> bool:
    states = dig(results, "freshness", "kafka_redis", "page_by_processor_state") or {}
    shown = [s for s in STATES if s in states]
    if not shown:
        return False
    axes = figure.subplots()
    axes.bar(shown, [median(states[s].get("p99_ms")) or 0.0 for s in shown])
    axes.set_xlabel("processor")
    axes.set_ylabel("page p99 (ms)")
    axes.grid(True, axis="y", alpha=0.3)
    return True


def _line(axes: Any, rows: dict[str, Any], path: tuple[str, ...], label: str) -> None:
    """One series over a dict keyed by connections or rate; spreads as error bars."""
    xs, ys, low, high = [], [], [], []
    for key, row in sorted(rows.items(), key=lambda kv: float(kv[0])):
        value = dig(row, *path)
        middle = median(value)
        if middle is None:
            continue
        xs.append(float(key))
        ys.append(middle)
        spread = value if isinstance(value, dict) else {}
        low.append(middle - float(spread.get("min", middle)))
        high.append(float(spread.get("max", middle)) - middle)
    if xs:
        axes.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=label)


def _rate_label(rate: str, level: dict[str, Any]) -> str:
    return f"max\n({level.get('target_events_per_s', '?')})" if rate == "max" else rate


def median(value: Any) -> float | None:
    """A figure as one number: the median of a {median, min, max} spread."""
    if isinstance(value, dict):
        value = value.get("median")
    return float(value) if isinstance(value, int | float) else None


def dig(value: Any, *keys: str) -> Any:
    """value[k1][k2]... or None where a key is missing."""
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
