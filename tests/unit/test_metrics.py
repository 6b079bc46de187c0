"""GET /metrics: the Prometheus families after traffic through an embedded system, on the
API and on the processor-only app, and added up over processes that share
PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shopper.api.dashboard import VARIANT_FIELD, field_of, page_route
from shopper.services.metrics import (
    RECOMMENDATIONS_ROUTE,
    SIMILAR_ROUTE,
    SPOOL_STATES,
    Metrics,
    Probes,
)
from shopper.services.processor import ProcessorRunner
from tests.unit.api_harness import Api, SwitchableApp
from tests.unit.factories import drain, in_catalog, view

LAG = "shopper_processor_lag_records"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client) -> Samples:
    """Every sample of `GET /metrics`, by name and labels, parsed as Prometheus would."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    """The sum of a family's samples over all their labels."""
    return sum(value for (found, _), value in samples.items() if found == name)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value
        for (found, labels), value in samples.items()
        if found == name and label in dict(labels)
    }


def test_page_reads_lists_and_the_processor_are_counted(api: Api) -> None:
    in_catalog(api.system.state, "i0", "i1", "i2")
    mine = [view(f"e{n}", "me", f"i{n}", session_id="visit") for n in range(3)]
    api.http.post("/v1/events", json=[*mine, view("e9", "you", "i1")])
    api.process()
    for _ in range(3):
        assert api.recommend(user_id="me", session_id="visit")["source"] == "personalized"
    for _ in range(2):
        assert api.recommend()["source"] == "popular"  # nobody: no impression either
    assert api.http.get("/v1/items/i1/similar").status_code == 200
    api.http.post("/v1/events", json=[view("e0", "me", "i0", session_id="visit")])  # again
    api.system.event_log.publish(api.system.config.events_topic, "junk", b"not an event")
    api.process()
    api.system.experiment_report(0.0)  # the fresh report, which the scrape then reads

    samples = scrape(api.http)
    seconds = "shopper_page_read_seconds_count"
    assert sample(samples, seconds, route=RECOMMENDATIONS_ROUTE) == 5
    assert sample(samples, seconds, route=SIMILAR_ROUTE) == 1
    served = {
        dict(labels)["source"]: value
        for (name, labels), value in samples.items()
        if name == "shopper_lists_served_total" and dict(labels)["variant"] == "champion"
    }
    assert served == {"personalized": 3, "popular": 2, "similar": 1}
    applied = by_label(samples, "shopper_events_applied_total", "type")
    assert applied == {"view": 4, "impression": 3}
    assert sample(samples, "shopper_impressions_total") == 3
    assert sample(samples, "shopper_duplicate_events_total") == 1
    assert sample(samples, "shopper_dead_letters_total") == 1
    # Each shopper's list, then mine again for my redelivered event (impressions change
    # no list): one freshness each.
    assert total(samples, "shopper_lists_written_total") == 3
    assert sample(samples, "shopper_list_freshness_seconds_count") == 3
    assert sample(samples, "shopper_experiment_sessions", variant="champion") == 1
    assert sample(samples, "shopper_experiment_conversion_ratio", variant="champion") == 0
    spool = by_label(samples, "shopper_spool_records", "state")
    assert spool == dict.fromkeys(SPOOL_STATES, 0)


def test_stats_keep_their_keys(api: Api) -> None:
    stats = api.http.get("/v1/stats").json()
    assert set(stats) >= {
        "records", "applied", "duplicates", "dead_letters", "lists_written", "impressions",
        "processors", "freshness_p50_ms", "freshness_p99_ms", "stream", "ranking",
    }  # fmt: skip


def test_lag_per_partition_is_what_the_last_micro_batch_left_behind(api: Api) -> None:
    system = api.system
    system.config = system.config.model_copy(update={"microbatch_max_events": 3})
    api.http.post("/v1/events", json=[view(f"e{n}", f"u{n}", "a") for n in range(8)])
    processor = system.processor()
    runner = ProcessorRunner(processor)  # driven here, not started
    system.runners.append(runner)
    try:
        assert by_label(scrape(api.http), LAG, "partition") == {}  # nothing read yet
        processor.run_once()
        assert sum(processor.lag.values()) == 8 - 3
        lag = by_topic(scrape(api.http))
        assert set(lag) == {system.config.events_topic, system.config.catalog_topic}
        assert len(lag[system.config.events_topic]) == system.config.partitions
        assert sum(lag[system.config.events_topic].values()) == 8 - 3
        drain(system, processor)
        assert sum(by_topic(scrape(api.http))[system.config.events_topic].values()) == 0
    finally:
        system.runners.remove(runner)
        processor.close()


def by_topic(samples: Samples) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name == LAG:
            found = dict(labels)
            out.setdefault(found["topic"], {})[found["partition"]] = value
    return out


def test_the_processor_only_app_serves_metrics_too(
    api: Api, server: tuple[SwitchableApp, str]
) -> None:
    switch, _ = server
    api.http.post("/v1/events", json=[view("e1", "me", "a")])
    switch.target = api.system.ops_app()
    api.process()
    samples = scrape(api.http)
    assert by_label(samples, "shopper_events_applied_total", "type") == {"view": 1}
    assert sample(samples, "shopper_page_read_seconds_count", route=RECOMMENDATIONS_ROUTE) == 0


def test_the_variant_is_read_off_the_body_and_page_routes_are_bounded() -> None:
    body = b'{"items":[{"item_id":"\\"variant\\":\\"x","score":1.0}],"variant":"challenger"}'
    assert field_of(body, VARIANT_FIELD) == "challenger"
    assert page_route("/v1/items/a/b/similar") == SIMILAR_ROUTE  # an item id with a slash
    assert page_route("/v1/recommendations") == RECOMMENDATIONS_ROUTE
    assert page_route("/v1/events") is None


def report(*variants: dict[str, Any]) -> dict[str, Any]:
    return {"champion": "champion", "variants": list(variants)}


def test_the_experiment_is_read_when_scraped_and_a_failing_report_costs_only_itself() -> None:
    reports: list[dict[str, Any]] = []

    def latest() -> dict[str, Any]:
        if not reports:
            raise ConnectionError("state store away")
        return reports[-1]

    metrics = Metrics()
    metrics.watch(Probes(lambda: {"waiting": 2}, dict, latest, lambda: {"10+": 0.25}))
    samples = parse(metrics.exposition()[0].decode())
    assert sample(samples, "shopper_spool_records", state="waiting") == 2
    assert sample(samples, "shopper_tier_share_ratio", tier="10+") == 0.25
    assert by_label(samples, "shopper_experiment_sessions", "variant") == {}
    rate = {"value": 0.5, "low": 0.2, "high": 0.8}
    revenue = {"value": 12.5, "low": 1.0, "high": 20.0}
    champion = {"name": "champion", "sessions": 4, "conversion_rate": rate}
    idle = {"name": "challenger", "sessions": 0, "conversion_rate": None}
    reports.append(
        report(
            {**champion, "revenue_per_session": revenue},
            {**idle, "revenue_per_session": None},
        )
    )
    samples = parse(metrics.exposition()[0].decode())
    sessions = by_label(samples, "shopper_experiment_sessions", "variant")
    assert sessions == {"champion": 4, "challenger": 0}
    assert by_label(samples, "shopper_experiment_conversion_ratio", "variant") == {
        "champion": 0.5
    }  # no sessions, no rate: not a made-up 0
    assert by_label(samples, "shopper_experiment_revenue_per_session", "variant") == {
        "champion": 12.5
    }
    reports.append(report())  # no variant any more: no stale copy of their figures
    samples = parse(metrics.exposition()[0].decode())
    assert by_label(samples, "shopper_experiment_sessions", "variant") == {}


# Several processes: each a fresh interpreter with PROMETHEUS_MULTIPROC_DIR set, as uvicorn
# workers or processors on one machine would be.
WORKER = textwrap.dedent(
    """
    import asyncio, sys
    import httpx
    from shopper.bootstrap import build_system
    from shopper.config import load_config

    reads, data_dir, scrape = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "scrape"
    system = build_system(load_config({}, data_dir=data_dir))
    app = system.app()

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shopper") as c:
            for n in range(reads):
                r = await c.get("/v1/recommendations", params={"user_id": f"u{n}"})
                r.raise_for_status()
            if scrape:
                sys.stdout.write((await c.get("/metrics")).text)

    asyncio.run(main())
    system.close()
    """
)


def run_worker(folder: Path, reads: int, scrape: bool, data_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "OPENBLAS_NUM_THREADS": "1"}
    args = [str(reads), str(data_dir), "scrape" if scrape else "-"]
    done = subprocess.run(
        [sys.executable, "-c", WORKER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_metrics_add_up_over_processes_sharing_a_folder(tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    run_worker(multiproc_dir, 3, scrape=False, data_dir=tmp_path / "one")
    assert not list(multiproc_dir.glob("gauge_live*")), "a closed process's live gauges stay"
    text = run_worker(multiproc_dir, 4, scrape=True, data_dir=tmp_path / "two")
    samples = parse(text)
    assert sample(samples, "shopper_page_read_seconds_count", route=RECOMMENDATIONS_ROUTE) == 7
    assert sample(samples, "shopper_lists_served_total", source="popular", variant="champion") == 7
    # The live process's spool, sampled when scraped; the closed one's is gone.
    assert by_label(samples, "shopper_spool_records", "state") == dict.fromkeys(SPOOL_STATES, 0)
