"""`make bench`'s report: the results as JSON, PNG plots, and a markdown summary.

`write(results, folder)` saves `latest.json` (the results and the machine they were taken
on) and renders it; `python -m benchmarks.report bench/results/latest.json` renders a saved
one again: the plots and `latest.md` beside it (the README's performance section), with a
table of the must-show checks, each measured and passed or failed. Sections missing from the
results (a shorter run, or an older one) are left out; their checks say "not measured".
The checks are `benchmarks.report_checks`', the plots `benchmarks.report_plots`'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report_plots
from benchmarks.report_checks import MODES, Check, checks
from benchmarks.report_plots import dig, median

ROOT = Path(__file__).resolve().parents[1]
STATES = ("healthy", "slow", "stopped")


def write(results: dict[str, Any], folder: Path) -> Path:
    """Save `results` with the machine's description as `folder/latest.json`, local paths
    scrubbed, and render its plots and markdown beside it. Returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = scrub({"machine": machine(), **results}, _local_paths())
    path = folder / "latest.json"
    path.write_text(json.dumps(saved, indent=2) + "\n")
    render(path)
    return path


def render(path: Path, image_prefix: str = "") -> Path:
    """The plots and `latest.md` of a saved results file, in its folder; image links in the
    markdown start with `image_prefix` (relative to where the markdown will be read)."""
    results = json.loads(path.read_text())
    plots = report_plots.draw(results, path.parent)
    markdown = path.parent / f"{path.stem}.md"
    markdown.write_text(to_markdown(results, [(t, f"{image_prefix}{p.name}") for t, p in plots]))
    return markdown


# -- the machine ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on, and from which code."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu_count": os.cpu_count(),
        "cores": cores,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # When the report was written: how busy the (shared) machine was, other work too.
        "load_average": [round(n, 2) for n in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        **_git(),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"git_commit": commit or None, "git_dirty": bool(git("status", "--porcelain"))}


def _local_paths() -> dict[str, str]:
    """Folder names of this machine, longest first, and what stands in for each."""
    places = {
        str(ROOT): ".",
        tempfile.gettempdir(): "<tmp>",
        str(Path.home()): "~",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
    }
    return dict(sorted(places.items(), key=lambda kv: -len(kv[0])))


def scrub(value: Any, places: dict[str, str]) -> Any:
    """`value` with every local folder in its strings replaced by its stand-in."""
    if isinstance(value, str):
        for place, stand_in in places.items():
            if len(place) > 1:
                value = value.replace(place, stand_in)
        return value
    if isinstance(value, dict):
        return {scrub(k, places): scrub(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, places) for v in value]
    return value


# -- numbers -------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    """A figure for a table: `median (min-max)` for a spread, `-` when missing."""
    if isinstance(value, dict) and {"median", "min", "max"} <= value.keys():
        low, high = _num(value["min"], digits), _num(value["max"], digits)
        return f"{_num(value['median'], digits)}{unit} ({low}-{high})"
    number = median(value)
    return "-" if number is None else f"{_num(number, digits)}{unit}"


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


# -- the markdown --------------------------------------------------------------------


def to_markdown(results: dict[str, Any], plots: list[tuple[str, str]] | None = None) -> str:
    """`latest.md`, from saved results; `plots`: (title, link)."""
    parts = [_heading(results), *_summary(results)]
    parts.extend(f"![{title}]({link})\n" for title, link in plots or [])
    parts.extend(_conditions(results))
    return "\n".join(parts)


def _summary(results: dict[str, Any]) -> list[str]:
    """The must-show checks and every section's table."""
    parts = [_check_table(checks(results))]
    sections = (_page_section, _freshness_section, _states_section, _processor_section)
    for section in (*sections, _allocator_section):
        parts.extend(section(results))
    return parts


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(readme: Path, results_path: Path) -> None:
    """The README's performance figures (between README_START and README_END) replaced by
    the saved results' checks and tables, the conditions left to `latest.md`."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme} has no {README_START} ... {README_END} block to replace")
    results = json.loads(results_path.read_text())
    link = Path(os.path.relpath(results_path.resolve(), readme.resolve().parent)).as_posix()
    m = results.get("machine") or {}
    commit = (m.get("git_commit") or "unknown")[:10]
    dirty = " with uncommitted changes" if m.get("git_dirty") else ""
    run = dig(results, "conditions", "run") or "make bench"
    lead = (
        f"The last run: `{run}` on {m.get('date', 'an unknown date')}, commit `{commit}`{dirty}"
        f", {m.get('cpu_count', '?')} cores ({m.get('cpu_model', 'unknown CPU')}){_load(m)}; "
        f"how each figure was taken: [`{link.removesuffix('.json')}.md`]"
        f"({link.removesuffix('.json')}.md).\n"
    )
    block = "\n".join([lead, *(_demoted(part) for part in _summary(results))])
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")


def _demoted(part: str) -> str:
    """A section's `###` heading as `####`: under the README's own `## Benchmarks`."""
    return part.replace("### ", "#### ", 1) if part.startswith("### ") else part


def _heading(results: dict[str, Any]) -> str:
    m = results.get("machine") or {}
    commit = (m.get("git_commit") or "unknown")[:10]
    dirty = " with uncommitted changes" if m.get("git_dirty") else ""
    run = dig(results, "conditions", "run") or "make bench"
    return (
        "## Performance\n\n"
        f"`{run}` on {m.get('date', 'an unknown date')}, commit `{commit}`{dirty}: "
        f"{m.get('cpu_count', '?')} cores ({m.get('cpu_model', 'unknown CPU')}), Python "
        f"{m.get('python', '?')}, {m.get('system', '')}{_load(m)}. One machine runs shopper, "
        "its load generators, Redis and the Kafka-protocol broker (tansu), so figures are noisy; "
        "each section says how it was taken (Conditions, below). Regenerate this file with "
        "`python -m benchmarks.report bench/results/latest.json`.\n"
    )


def _load(m: dict[str, Any]) -> str:
    load = m.get("load_average") or []
    return f", load average {', '.join(map(str, load))} at the end" if load else ""


def _check_table(rows: list[Check]) -> str:
    verdicts = {True: "pass", False: "**fail**", None: "not measured"}
    lines = ["### Must-show checks\n", "| check | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {c.what} | {c.target} | {c.measured} | {verdicts[c.passed]} |" for c in rows]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: Iterator[list[str]] | list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _page_section(results: dict[str, Any]) -> list[str]:
    page = results.get("page_load") or {}
    out = []
    if levels := page.get("levels"):
        header = ["connections", "shopper req/s", "floor req/s", "shopper p99 ms"]
        header += ["floor p99 ms", "req/s ratio", "p99 ratio", "shopper pages from copy"]
        out += ["### Page path, closed loop\n", _table(header, _level_rows(levels))]
    if rates := page.get("open_loop"):
        baseline = dig(page, "sync_baseline", "open_loop") or {}
        header = ["req/s offered", "shopper p99 ms", "floor p99 ms", "shopper p99.9 ms"]
        header += ["shopper pages from copy"]
        header += ["sync baseline p99 ms"] if baseline else []
        rows = [
            [
                rate,
                fmt(dig(row, "shopper", "p99_ms"), 2),
                fmt(dig(row, "floor", "p99_ms"), 2),
                fmt(dig(row, "shopper", "p999_ms"), 2),
                fmt(dig(row, "shopper", "pages_from_copy"), 0),
                *([fmt(_baseline_p99(baseline, rate), 0)] if baseline else []),
            ]
            for rate, row in rates.items()
        ]
        out += ["### Page path, open loop\n", _table(header, rows)]
    return out


def _baseline_p99(baseline: dict[str, Any], key: str) -> Any:
    return dig(baseline, key, "sync_baseline", "p99_ms") or dig(baseline, key, "p99_ms")


def _level_rows(levels: dict[str, Any]) -> Iterator[list[str]]:
    for n, level in levels.items():
        ratio = level.get("ratio_shopper_over_floor") or {}
        yield [
            n,
            fmt(dig(level, "shopper", "req_per_s"), 0),
            fmt(dig(level, "floor", "req_per_s"), 0),
            fmt(dig(level, "shopper", "p99_ms"), 2),
            fmt(dig(level, "floor", "p99_ms"), 2),
            fmt(ratio.get("req_per_s"), 2, "x"),
            fmt(ratio.get("p99_ms"), 2, "x"),
            fmt(dig(level, "shopper", "pages_from_copy"), 0),
        ]


def _freshness_section(results: dict[str, Any]) -> list[str]:
    fresh = results.get("freshness") or {}
    rows, sold, tops = [], [], []
    for mode, name in MODES.items():
        part = fresh.get(mode) or {}
        for rate, level in (part.get("freshness") or {}).items():
            label = f"max ({level.get('target_events_per_s', '?')})" if rate == "max" else rate
            rows.append(_freshness_row(name, label, level))
        if top := part.get("max_events_per_s"):
            tops.append(_max_row(name, top))
        if so := part.get("sold_out"):
            sold.append(_sold_out_row(name, so))
    out = []
    if rows:
        header = ["deployment", "events/s", "sent/s", "processed/s", "p50 ms", "p99 ms"]
        header += ["never fresh", "CPU: processor / machine (cores)"]
        out += ["### Freshness: event accepted to page served\n", _table(header, rows)]
    if tops:
        header = ["deployment", "backlog drained, events/s", "sustained, events/s"]
        out += ["### The processor's maximum\n", _table(header, tops)]
    if sold:
        header = ["deployment", "items", "p50 ms", "p99 ms", "max ms", "reads after the 202"]
        header += ["of them showing it"]
        out += ["### Sold-out items: stock event accepted to no page showing it\n"]
        out += [_table(header, sold)]
    return out


def _freshness_row(mode: str, label: str, level: dict[str, Any]) -> list[str]:
    never = f"{level.get('never_fresh', '-')} of {level.get('probes', '-')}"
    return [
        mode,
        label,
        fmt(level.get("sent_events_per_s"), 0),
        fmt(level.get("processed_per_s"), 0),
        fmt(level.get("p50_ms"), 0),
        fmt(level.get("p99_ms"), 0),
        never,
        _cpu(level.get("cpu_share") or {}, "processor"),
    ]


def _cpu(shares: dict[str, float], own: str) -> str:
    """`own`'s share (the whole process when embedded) / the machine's, in cores."""
    mine = shares.get(own, shares.get("process"))
    return f"{fmt(mine, 2)} / {fmt(shares.get('machine'), 2)}" if shares else "-"


def _max_row(mode: str, top: dict[str, Any]) -> list[str]:
    kept = top.get("sustained") or {}
    note = "" if kept.get("kept_up", True) else " (not kept up even there)"
    return [mode, fmt(top.get("events_per_s"), 0), fmt(kept.get("events_per_s"), 0) + note]


def _sold_out_row(mode: str, sold: dict[str, Any]) -> list[str]:
    return [
        mode,
        str(sold.get("items", "-")),
        fmt(sold.get("p50_ms"), 0),
        fmt(sold.get("p99_ms"), 0),
        fmt(sold.get("max_ms"), 0),
        str(sold.get("reads_after_accept", "-")),
        str(sold.get("reads_showing_it_after_accept", "-")),
    ]


def _states_section(results: dict[str, Any]) -> list[str]:
    states = dig(results, "freshness", "kafka_redis", "page_by_processor_state")
    if not states:
        return []
    ratios = states.get("p99_over_healthy") or {}
    rows = [
        [
            state,
            fmt(dig(states, state, "p99_ms"), 2),
            fmt(ratios.get(state), 2, "x"),
            fmt(dig(states, state, "req_per_s"), 0),
            fmt(dig(states, state, "processed_per_s"), 0),
            _cpu(dig(states, state, "cpu_share") or {}, "api"),
            _shares(dig(states, state, "sources") or {}),
        ]
        for state in STATES
        if state in states
    ]
    header = ["processor", "page p99 ms", "over healthy", "req/s", "events processed/s"]
    header += ["CPU: API / machine (cores)", "pages served from"]
    return ["### The page while the processor is healthy, slow or stopped\n", _table(header, rows)]


def _shares(sources: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in sources.items()) or "-"


def _processor_section(results: dict[str, Any]) -> list[str]:
    proc = results.get("processor") or {}
    names = {
        "embedded_events_per_s": "embedded",
        "embedded_pymalloc_events_per_s": "embedded on CPython's own allocator (pymalloc)",
        "redis_state_events_per_s": "Redis state, in-memory stream",
        "kafka_redis_events_per_s": "Kafka + Redis",
    }
    rows = [[name, fmt(_with_range(proc, key), 0)] for key, name in names.items() if key in proc]
    if not rows:
        return []
    how = f"; {proc['ranker']}" if proc.get("ranker") else ""
    title = f"### Processor throughput (a backlog of {proc.get('events', '?')} events{how})\n"
    out = [title, _table(["where", "events/s"], rows)]
    if (rss := median(proc.get("rss_mb_per_100k_shoppers"))) is not None:
        out.append(f"Processor memory: {rss:,.0f} MB of RSS per 100,000 shoppers.\n")
    return out


def _allocator_section(results: dict[str, Any]) -> list[str]:
    levels = dig(results, "allocator", "levels") or {}
    if not levels:
        return []
    header = ["connections", "pymalloc req/s", "jemalloc req/s", "req/s ratio", "p99 ratio"]
    rows = [
        [
            n,
            fmt(dig(level, "pymalloc", "req_per_s"), 0),
            fmt(dig(level, "jemalloc", "req_per_s"), 0),
            fmt(dig(level, "ratio_jemalloc_over_pymalloc", "req_per_s"), 2, "x"),
            fmt(dig(level, "ratio_jemalloc_over_pymalloc", "p99_ms"), 2, "x"),
        ]
        for n, level in levels.items()
    ]
    title = "### The page on jemalloc (as `shopper serve` runs) over CPython's pymalloc\n"
    return [title, _table(header, rows)]


def _with_range(figures: dict[str, Any], key: str) -> Any:
    """figures[key], as a spread when `<key>_min_max` gives its range."""
    low_high = figures.get(f"{key}_min_max")
    if isinstance(low_high, list) and len(low_high) == 2:
        return {"median": figures[key], "min": low_high[0], "max": low_high[1]}
    return figures[key]


def _conditions(results: dict[str, Any]) -> list[str]:
    lines = ["### Conditions\n"]
    for section, name in (("page_load", "Page path"), ("freshness", "Live deployment")):
        said = dig(results, section, "conditions")
        if said:
            lines.append(f"**{name}**\n")
            lines.extend(f"- {key}: {text}" for key, text in _flatten(said))
            lines.append("")
    return lines if len(lines) > 1 else []


def _flatten(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, inner in value.items():
        if isinstance(inner, dict):
            yield from _flatten(inner, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", _text(inner)


def _text(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("results", type=Path, help="a saved results file (latest.json)")
    parser.add_argument(
        "--image-prefix", default="", help="what image links start with, e.g. bench/results/"
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help=f"also put the checks and tables into this README, between {README_START} "
        f"and {README_END}",
    )
    args = parser.parse_args(argv)
    print(render(args.results, args.image_prefix))
    if args.readme is not None:
        update_readme(args.readme, args.results)
        print(args.readme)


if __name__ == "__main__":
    main()
