"""The demo report, for people."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sold_out_items_served": ("== 0", lambda v: v == 0),
    "serve_p99_ms": ("< 5 ms", lambda v: v < 5),
    "personalized_share": ("> 0.5 (simulator)", lambda v: v > 0.5),
}


def render_report(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"shopper demo: {report['traffic']}", show_lines=False)
    table.add_column("measure")
    table.add_column("value", justify="right", overflow="fold")  # ids in full
    table.add_column("target")
    for key, value in report.items():
        if key == "experiment":
            continue  # a table of its own, below
        if isinstance(value, dict):
            value = "\n".join(f"{k}={v}" for k, v in _flattened(value))
        target, mark = "", ""
        if key in TARGETS:
            target, ok = TARGETS[key]
            mark = " [green]ok[/]" if ok(report[key]) else " [red]missed[/]"
        table.add_row(key, str(value), target + mark)
    console.print(table)
    if "experiment" in report:
        console.print(experiment_table(report["experiment"]))


def _flattened(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A nested dict's leaves, one per line of the table: `model.ranker.skipped=...`."""
    for key, item in value.items():
        if isinstance(item, dict) and item:
            yield from _flattened(item, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", item


def experiment_table(variants: dict[str, Any]) -> Table:
    """Per variant: model, share, sessions, conversion and revenue per session (95%
    intervals), and the challenger against the champion."""
    table = Table(title="experiment (per variant)")
    for column in ("variant", "model", "share", "sessions", "conversion", "revenue/session"):
        table.add_column(column, justify="left" if column in ("variant", "model") else "right")
    table.add_column("vs champion")
    for name, v in variants.items():
        versus = v.get("vs_champion") or {}
        against = "; ".join(
            f"{metric} {c['difference']:+.3g} (p={c['p_value']:.3g}"
            f"{', significant' if c['significant'] else ''})"
            for metric, c in versus.items()
            if c is not None and c.get("difference") is not None
        )
        table.add_row(
            name, str(v["model"]), f"{v['weight']}%", str(v["sessions"]),
            _interval(v["conversion_rate"]), _interval(v["revenue_per_session"]), against,
        )  # fmt: skip
    return table


def _interval(value: dict[str, Any] | None) -> str:
    if not value or value.get("value") is None:
        return "-"
    return f"{value['value']:.3g} [{value['low']:.3g}, {value['high']:.3g}]"
