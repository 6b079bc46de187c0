"""The demo report, for people."""

from __future__ import annotations

from collections.abc import Callable
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
    table.add_column("value", justify="right")
    table.add_column("target")
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        target, mark = "", ""
        if key in TARGETS:
            target, ok = TARGETS[key]
            mark = " [green]ok[/]" if ok(report[key]) else " [red]missed[/]"
        table.add_row(key, str(value), target + mark)
    console.print(table)
