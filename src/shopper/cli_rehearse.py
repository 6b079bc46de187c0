"""`shopper rehearse`: drive a running deployment with a traffic profile (a flash sale, by
default) and report what its shoppers would have seen. docs/rehearsal.md tells more."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shopper.cli_common import AdminToken, DataDir, IngestKey, Json, _config, _fail, app
from shopper.errors import ShopperError

PHASES = ("warmup", "ramp", "hold", "cooldown")  # as rehearsal.plan.PHASES (numpy-free here)

# --fail-on KEY=MAX: where each KEY is read in the report.
CHECKS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "page_p99_ms": lambda r: r["pages"]["p99_ms"],
    "page_errors": lambda r: r["pages"]["sent"] - r["pages"]["ok"],
    "freshness_p99_ms": lambda r: r["freshness"]["p99_ms"],
    "stale": lambda r: r["freshness"]["stale"],
    "sold_out_served": lambda r: r["sold_out"]["served"],
    "fallback_share": lambda r: r["fallback_share"],
}


@app.command()
def rehearse(
    target: Annotated[str, typer.Option(help="base URL of the running shopper API")] = (
        "http://127.0.0.1:8000"
    ),
    profile: Annotated[
        str,
        typer.Option(help="a bundled profile's name (flash-sale, smoke) or a .toml file's path"),
    ] = "flash-sale",
    seconds: Annotated[
        float | None,
        typer.Option(min=0.1, help="play the profile in this many seconds, every phase in step"),
    ] = None,
    rate_scale: Annotated[
        float, typer.Option(min=0.01, help="multiply the profile's event and page rates")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of the traffic's shape")] = 7,
    concurrency: Annotated[
        int, typer.Option(min=1, help="connections for the load (pages beyond them queue)")
    ] = 64,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per request")] = 10.0,
    ready_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds for the target's first list to be written")
    ] = 30.0,
    retire: Annotated[
        bool,
        typer.Option(
            "--retire",
            help="afterwards, set every item of the run to stock 0, so pages stop showing them "
            "(docs/rehearsal.md: what that does to the next run on an untrained server)",
        ),
    ] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="KEY=MAX",
            help=f"exit 1 when a measure is above MAX, repeatable; KEY: {', '.join(CHECKS)}",
        ),
    ] = None,
    as_json: Json = False,
    admin_token: AdminToken = None,
    ingest_key: IngestKey = None,
    data_dir: DataDir = None,
) -> None:
    """Rehearse a peak day: ramp a running deployment to a profile's peak rate while items
    sell out and one goes viral, and report page latency, freshness, sold-out items served
    and the fallback share. Exits 2 if the target cannot be reached."""
    from shopper.keys import client_keys
    from shopper.rehearsal.driver import RehearsalOptions, run_rehearsal
    from shopper.rehearsal.plan import Plan
    from shopper.rehearsal.profile import load_profile

    limits = _limits(fail_on or [])
    # Unset: the configured keys, else the keys file of a local `shopper serve`.
    admin_token, ingest_key = client_keys(_config(data_dir=data_dir), admin_token, ingest_key)
    options = RehearsalOptions(
        target=target.rstrip("/"),
        concurrency=concurrency,
        timeout_s=timeout,
        ready_timeout_s=ready_timeout,
        retire=retire,
        admin_token=admin_token,
        ingest_key=ingest_key,
    )
    try:
        spec = load_profile(profile).scaled(seconds, rate_scale)
        plan = Plan(spec, seed, f"rh{uuid.uuid4().hex[:8]}")
        with _live(enabled=not as_json and sys.stdout.isatty()) as show:
            report = run_rehearsal(plan, options, show)
    except ShopperError as exc:
        raise _fail(exc) from None
    report["seed"] = seed
    report["checks"] = _check(report, limits)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        Console().print(report_table(report))
    missed = [key for key, c in report["checks"].items() if not c["ok"]]
    if missed:
        typer.echo(f"over the limit: {', '.join(missed)}", err=True)
        raise typer.Exit(1)


def _limits(specs: list[str]) -> dict[str, float]:
    limits = {}
    for spec in specs:
        key, _, value = spec.partition("=")
        if key not in CHECKS:
            raise typer.BadParameter(f"--fail-on {spec}: KEY is one of {', '.join(CHECKS)}")
        try:
            limits[key] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--fail-on {spec}: MAX must be a number") from None
    return limits


def _check(report: dict[str, Any], limits: dict[str, float]) -> dict[str, Any]:
    out = {}
    for key, limit in limits.items():
        value = CHECKS[key](report)
        # No value (no fresh list at all, no page answered) cannot pass a limit.
        out[key] = {"max": limit, "value": value, "ok": value is not None and value <= limit}
    return out


@contextmanager
def _live(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """A live display fed by the run's progress snapshots; nothing when disabled."""
    if not enabled:
        yield None
        return
    with Live(Table(), refresh_per_second=4, transient=True) as live:
        yield lambda progress: live.update(progress_table(progress))


def progress_table(p: Any) -> Table:
    """The live view of a `rehearsal.driver.Progress`."""
    table = Table(title="shopper rehearse", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = {
        "elapsed": f"{p.elapsed_s:.0f} / {p.duration_s:.0f} s ({p.phase})",
        "planned rate": f"{p.events_per_s:.0f} events/s, {p.pages_per_s:.0f} pages/s",
        "pages": f"{p.pages} ({p.in_flight} in flight)",
        "page p99": _ms(p.page_p99_ms),
        "events accepted": str(p.events_accepted),
        "freshness p50 / p99": f"{_ms(p.freshness_p50_ms)} / {_ms(p.freshness_p99_ms)}",
        "fresh / stale": f"{p.fresh} / {p.stale}",
        "sold-out items served": str(p.sold_out_served),
        "errors": str(p.errors),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def report_table(r: dict[str, Any]) -> Table:
    """The final report, for people (`--json` prints all of it)."""
    pages, fresh, sold = r["pages"], r["freshness"], r["sold_out"]
    table = Table(title=f"shopper rehearse: {r['profile']} against {r['target']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = {
        "run": f"{r['elapsed_s']} s (planned {r['planned_s']}), run id {r['run_id']}",
        "pages sent / 200": f"{pages['sent']} / {pages['ok']} ({pages['per_s']}/s)",
        "page p50 / p99 / max": _trio(pages),
        **{
            f"  in {phase} (fallback share)": f"{_trio(v)} ({v['fallback_share']})"
            for phase, v in sorted(pages["by_phase"].items(), key=lambda pv: PHASES.index(pv[0]))
        },
        "  inside shopper (Server-Timing)": _trio(pages["server"]),
        "page errors": _errors(pages["non_200"], pages["errors"]),
        "events sent / accepted": f"{r['events']['sent']} / {r['events']['accepted']}",
        "freshness p50 / p99 / max": _trio(fresh),
        "fresh / stale (timeout)": f"{fresh['fresh']} / {fresh['stale']} ({fresh['timeout_s']} s)",
        "sold-out items served": f"{sold['served']} on {sold['pages']} pages",
        "  worst delay after sell-out": _ms(sold["worst_delay_ms"]),
        "  sell-outs / seen before": f"{sold['stock_events']} / {sold['seen_before']}",
        "fallback share": str(r["fallback_share"]),
        "by source": ", ".join(f"{k} {v}" for k, v in r["sources"].items()),
        "client lag p99 / CPU share": (
            f"{_ms(r['client']['dispatch_lag_p99_ms'])} / {r['client']['cpu_share']:.0%}"
        ),
    }
    for key, check in r.get("checks", {}).items():
        rows[f"check {key} <= {check['max']:g}"] = "ok" if check["ok"] else "[red]over[/]"
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def _trio(v: dict[str, Any]) -> str:
    return f"{_ms(v['p50_ms'])} / {_ms(v['p99_ms'])} / {_ms(v['max_ms'])}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _errors(non_200: dict[str, int], errors: dict[str, int]) -> str:
    parts = [f"HTTP {s}: {n}" for s, n in non_200.items()] + [
        f"{e}: {n}" for e, n in errors.items()
    ]
    return ", ".join(parts) or "none"
