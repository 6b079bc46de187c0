"""The `make bench` report, rendered from small synthetic results: the must-show checks,
the markdown, the plots, and no local paths in what is saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks import report


def spread(median: float) -> dict[str, float]:
    return {"median": median, "min": median * 0.9, "max": median * 1.1}


def level(req_per_s: float, p99_ms: float, rps_ratio: float, p99_ratio: float) -> dict[str, Any]:
    return {
        "shopper": {"req_per_s": spread(req_per_s), "p99_ms": spread(p99_ms), "p999_ms": 2.0},
        "floor": {"req_per_s": spread(req_per_s / rps_ratio), "p99_ms": spread(p99_ms)},
        "ratio_shopper_over_floor": {
            "req_per_s": spread(rps_ratio),
            "p99_ms": spread(p99_ratio),
        },
    }


def deployment(fresh_p99_ms: float, never_fresh: int, sold_out_max_ms: float) -> dict[str, Any]:
    return {
        "max_events_per_s": {"events_per_s": 4200.0, "sustained": {"events_per_s": 3500}},
        "freshness": {
            "100": {"target_events_per_s": 100, "p50_ms": 60.0, "p99_ms": 90.0, "probes": 50},
            "1000": {
                "target_events_per_s": 1000,
                "p50_ms": 120.0,
                "p99_ms": fresh_p99_ms,
                "never_fresh": never_fresh,
                "probes": 200,
                "cpu_share": {"api": 0.2, "processor": 0.3, "machine": 1.9},
            },
            "max": {"target_events_per_s": 3500, "p50_ms": 300.0, "p99_ms": 900.0},
        },
        "sold_out": {"items": 10, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": sold_out_max_ms},
    }


def results() -> dict[str, Any]:
    page = {
        "levels": {
            "1": level(900, 1.2, 1.05, 1.1),
            "8": level(3000, 3.0, 1.01, 1.15),
            "32": level(3100, 11.0, 0.97, 1.1),  # under the floor's throughput: fails
        },
        "open_loop": {"1000": level(1000, 2.5, 1.0, 1.0)},
        "sync_baseline": {
            "levels": {
                "128": {
                    "sync_baseline": {"req_per_s": 5.0, "p99_ms": 10042.0},
                    "p99_ratio_over_shopper": 66.3,
                    "p99_is_lower_bound": True,
                }
            },
            "open_loop": {"1000": {"sync_baseline": {"p99_ms": 11001.0}}},
        },
        "conditions": {"levels": {"load": "closed loop", "connections": [1, 8, 32]}},
    }
    states = {
        "healthy": {"p99_ms": 4.0, "sources": {"personalized": 0.9, "popular": 0.1}},
        "slow": {"p99_ms": 4.2},
        "stopped": {"p99_ms": 4.4},
        "p99_over_healthy": {"healthy": 1.0, "slow": 1.05, "stopped": 1.1},
    }
    return {
        "page_load": page,
        "processor": {
            "events": 20000,
            "embedded_events_per_s": 5600.0,
            "embedded_events_per_s_min_max": [5000.0, 5900.0],
            "rss_mb_per_100k_shoppers": 770.0,
        },
        "freshness": {
            "embedded": deployment(300.0, 0, 0.0),
            "kafka_redis": {**deployment(1400.0, 2, 2.0), "page_by_processor_state": states},
            "conditions": {"freshness": "probes: 10 a second"},
        },
    }


def verdicts(rows: list[report.Check]) -> dict[str, bool | None]:
    return {row.what: row.passed for row in rows}


def test_each_must_show_is_judged_from_its_figure() -> None:
    got = verdicts(report.checks(results()))

    assert got["page on Redis vs the floor, 1 connection"] is True
    assert got["page on Redis vs the floor, 8 connections"] is True
    assert got["page on Redis vs the floor, 32 connections"] is False
    assert got["page p99, open loop at 1,000 req/s"] is True
    assert got["page p99 with the processor stopped, over healthy"] is True
    assert got["freshness p99 at 1,000 events/s (embedded)"] is True
    assert got["freshness p99 at 1,000 events/s (Kafka + Redis)"] is False
    assert got["sold-out item served after its stock event (Kafka + Redis)"] is True
    assert got["processor throughput, embedded"] is True
    assert got["synchronous baseline p99 over shopper's, 128 connections"] is True


def test_a_figure_not_in_the_results_is_not_measured_rather_than_failed() -> None:
    got = verdicts(report.checks(results()))

    assert got["processor throughput, Kafka + Redis"] is None
    assert all(passed is None for passed in verdicts(report.checks({})).values())


def test_markdown_has_the_checks_the_tables_and_the_conditions() -> None:
    text = report.to_markdown(results(), [("Freshness per event rate", "freshness.png")])

    assert "| page on Redis vs the floor, 32 connections | >= 1.0x req/s, <= 1.2x p99 |" in text
    assert "| 0.97x req/s, 1.10x p99 | **fail** |" in text
    assert "| not measured |" in text
    assert "| 1 | 900 (810-990) |" in text  # req/s as median (min-max)
    assert "| Kafka + Redis | 1000 |" in text and "| 2 of 200 | 0.30 / 1.90 |" in text
    assert "| embedded | 4,200 | 3,500 |" in text  # the processor's maximum
    assert "| stopped | 4.40 | 1.10x |" in text
    assert "personalized 90%, popular 10%" in text
    assert "![Freshness per event rate](freshness.png)" in text
    assert "- levels.connections: 1, 8, 32" in text
    assert "- freshness: probes: 10 a second" in text
    assert "| 1000 | 2.50 (2.25-2.75) | 2.50 (2.25-2.75) | 2.00 | - | 11,001 |" in text
    assert "| embedded | 5,600 (5,000-5,900) |" in text
    assert "770 MB of RSS per 100,000 shoppers" in text
    assert "66.3x (a lower bound" in text


def test_an_empty_run_renders_without_sections() -> None:
    text = report.to_markdown({})

    assert "### Must-show checks" in text
    assert "### Page path" not in text and "### Freshness" not in text


def test_write_saves_the_machine_and_renders_plots_and_markdown(tmp_path: Path) -> None:
    saved = report.write(results(), tmp_path)

    data = json.loads(saved.read_text())
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["python"]
    assert data["freshness"]["kafka_redis"]["freshness"]["1000"]["p99_ms"] == 1400.0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"latest.json", "latest.md", "page_closed_loop.png", "freshness.png"} <= names
    assert {"page_open_loop.png", "processor_states.png"} <= names
    assert (tmp_path / "freshness.png").read_bytes()[:4] == b"\x89PNG"


def test_render_again_from_a_saved_file_links_images_with_a_prefix(tmp_path: Path) -> None:
    saved = report.write(results(), tmp_path)
    (tmp_path / "latest.md").unlink()

    markdown = report.render(saved, image_prefix="bench/results/")

    assert "](bench/results/page_closed_loop.png)" in markdown.read_text()


def test_local_paths_are_scrubbed_from_what_is_saved(tmp_path: Path) -> None:
    here = str(report.ROOT)
    noisy = {"models": {"note": f"read {here}/data and /tmp/x", "list": [f"{here}/a"]}}

    scrubbed = report.scrub(noisy, {here: ".", "/tmp": "<tmp>"})

    assert scrubbed == {"models": {"note": "read ./data and <tmp>/x", "list": ["./a"]}}
    saved = report.write(noisy, tmp_path).read_text()
    assert here not in saved


def test_the_readme_block_gets_the_checks_and_tables_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    saved = report.write(results(), tmp_path / "bench" / "results")
    readme = tmp_path / "README.md"
    before, after = "# shop\n\nintro\n\n", "\n\nWhat limits these numbers: prose.\n"
    readme.write_text(f"{before}{report.README_START}\nold figures\n{report.README_END}{after}")

    report.update_readme(readme, saved)
    report.update_readme(readme, saved)  # again: the same block, not a second one

    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after)
    assert "old figures" not in text and text.count(report.README_START) == 1
    assert "#### Must-show checks" in text and "#### Page path, closed loop" in text
    assert "[`bench/results/latest.md`](bench/results/latest.md)" in text
    assert "**fail**" in text  # the fixture's Kafka + Redis freshness p99 of 1.4 s
    assert "Conditions" not in text  # left to latest.md


def test_a_readme_without_the_block_is_refused(tmp_path: Path) -> None:
    saved = report.write(results(), tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# shop\n")
    with pytest.raises(SystemExit, match="no <!-- bench:start -->"):
        report.update_readme(readme, saved)
    assert readme.read_text() == "# shop\n"


def test_a_level_whose_pages_came_from_the_copy_does_not_pass() -> None:
    """Pages answered from the API's copy (Redis late) are not the page path measured."""
    data = results()
    data["page_load"]["repeats"] = 3
    one = data["page_load"]["levels"]["1"]["shopper"]
    one["requests"] = spread(10_000)
    one["pages_from_copy"] = 200  # of 30,000: 0.7%, under the bar
    eight = data["page_load"]["levels"]["8"]["shopper"]
    eight["requests"] = spread(10_000)
    eight["pages_from_copy"] = 600  # 2%
    rows = {row.what: row for row in report.checks(data)}

    assert rows["page on Redis vs the floor, 1 connection"].passed is True
    eight_row = rows["page on Redis vs the floor, 8 connections"]
    assert eight_row.passed is False
    assert "600 of 30,000 pages from the copy" in eight_row.measured
