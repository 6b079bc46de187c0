"""The page path under load, against a floor and a synchronous baseline.

Three servers answer `GET /v1/recommendations` for the same shoppers with the same bytes
(`benchmarks.page_servers`):

- shopper: `python -m shopper serve --role api` on the Redis cache (a key prefix of this
  run's own), 5,000 shoppers' 50-item session lists written through shopper's own cache
  adapter, each page's impression published to Kafka as deployed (a tansu broker started
  here, unpinned, unless `make bench` passes its own);
- floor: `benchmarks.floor_app`, FastAPI on uvicorn doing one async Redis GET of the
  response shopper gave for that shopper (fetched once per shopper before the runs);
- sync_baseline: `benchmarks.sync_baseline_app`, the floor behind a model called on the
  request path (an inference pool of 8, lognormal service times of median 340 ms that
  triple as the pool fills; its docstring has the model).

Sections of the result (the load generators are `benchmarks.http_load`'s):

- `levels`: closed loop at 1, 8, 32, 128 connections, floor and shopper in turn (the order
  alternating between repeats); req/s and p50/p99/p99.9 (ms) as medians with min/max over
  the repeats, and shopper/floor ratios taken within each repeat.
- `open_loop`: the same at fixed rates (500, 1,000, 2,000 req/s, Poisson arrivals, one
  seed per repeat shared by both servers), latency from each request's scheduled time.
- `sync_baseline`: the baseline once at each connection level and rate, with longer
  windows (it answers a few requests a second; the levels run at once, each against a
  baseline server of its own, then the rates); its p99 over shopper's median p99, at each
  level and rate and at the peaks (`p99_ratio_at_peak`: 128 connections;
  `p99_ratio_at_peak_open_loop`: 2,000 req/s).
- `workers`: one uvicorn worker against two (the production setting on 2 cores), each
  server that has the option, closed loop, nothing pinned.
- `conditions`: how each figure was taken.

Servers run one uvicorn worker pinned to core 0 and the load generator is pinned to core 1
(except in `workers`); Redis is the local server, left unpinned.

`python -m benchmarks.page_load [--quick]` prints one JSON object. Redis: database 0 of
127.0.0.1:6379 unless SHOPPER_BENCH_REDIS says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from benchmarks import page_servers as servers
from benchmarks.cache import delete_prefix
from benchmarks.http_load import (
    LoadResult,
    Timing,
    closed_loop,
    closed_loop_async,
    open_loop,
    open_loop_async,
    run_async,
)
from benchmarks.page_plan import QUICK_LEVELS, WORKERS, Plan, conditions, plan_for
from benchmarks.page_servers import CLIENT_CORE, K, page_request
from shopper.services.runtime import free_port

__all__ = ["QUICK_LEVELS", "REPEATS", "SERVERS", "SHOPPERS", "run"]

SHOPPERS = 5000
REPEATS = 3
SERVERS = ("floor", "shopper")
COUNTS = ("errors", "non_200", "connection_errors", "timeouts", "late", "pages_from_copy")
RATIO_METRICS = ("req_per_s", "p50_ms", "p99_ms", "p999_ms")

Summary = dict[str, float]
Measure = Callable[[str, int], Summary]  # (url, repeat) -> one run's summary


def run(
    redis_url: str,
    quick: bool = False,
    timing: Timing | None = None,
    repeats: int = REPEATS,
    shoppers: int = SHOPPERS,
    kafka: str | None = None,
) -> dict[str, Any]:
    """Every section at once, as one dict (see the module docstring). shopper publishes
    each page's impression to Kafka as deployed: the broker at `kafka`, else a tansu broker
    started here (`memory://` only where tansu is not installed)."""
    plan = plan_for(quick, timing, repeats)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    sessions = [f"bench-s{n}" for n in range(shoppers)]
    requests = [page_request(session) for session in sessions]
    started = time.perf_counter()
    load_average = os.getloadavg()
    took: dict[str, float] = {}
    stack = contextlib.ExitStack()
    try:
        servers.fill_lists(redis_url, prefix, sessions)
        stream_url = stack.enter_context(_impression_stream(kafka))
        shopper_server = functools.partial(servers.shopper, stream_url=stream_url)
        with servers.pinned(CLIENT_CORE) as pinned:
            pair = (shopper_server(redis_url, prefix), servers.floor(redis_url, prefix))
            with servers.running(*pair) as (shopper, floor):
                servers.copy_responses(shopper, redis_url, prefix, sessions)
                urls = {"floor": floor, "shopper": shopper}
                levels = _timed(took, "levels", _levels, urls, requests, plan)
                opened = _timed(took, "open_loop", _open_loop, urls, requests, plan)
            baseline = _timed(took, "sync_baseline", _baseline, redis_url, prefix, requests, plan)
        workers = _timed(
            took, "workers", _workers, redis_url, prefix, requests, plan, shopper_server
        )
    finally:
        stack.close()
        delete_prefix(redis_url, prefix)
    return {
        "shoppers": shoppers,
        "k": K,
        "repeats": repeats,
        "warm_up_s": plan.timing.warm_up_s,
        "measure_s": plan.timing.measure_s,
        "pinned": pinned,
        "levels": levels,
        "open_loop": opened,
        "sync_baseline": _against_shopper(baseline, levels, opened),
        "workers": workers,
        "conditions": conditions(plan, shoppers, pinned, workers["servers"], load_average),
        "section_seconds": {name: round(s, 1) for name, s in took.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


@contextlib.contextmanager
def _impression_stream(kafka: str | None) -> Iterator[str]:
    """Where shopper publishes impressions: Kafka, as deployed (an API-only process on
    `memory://` would keep every one in its own memory, and its collector's pauses grow
    with them)."""
    if kafka:
        yield f"kafka://{kafka}"
        return
    try:
        from tests.fixtures.kafka import tansu_broker
    except ImportError:
        yield "memory://"
        return
    with tansu_broker(free_port()) as address:
        yield f"kafka://{address}"


def _timed(took: dict[str, float], name: str, section: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    try:
        return section(*args)
    finally:
        took[name] = time.perf_counter() - started


# -- the sections --------------------------------------------------------------------


def _levels(urls: dict[str, str], requests: list[bytes], plan: Plan) -> dict[str, Any]:
    out = {}
    for n in plan.levels:

        def measure(url: str, _: int, n: int = n) -> Summary:
            return closed_loop(url, requests, n, plan.timing).summary()

        out[str(n)] = compare(alternate(urls, _counting_copies(measure), plan.repeats), SERVERS)
    return out


def _open_loop(urls: dict[str, str], requests: list[bytes], plan: Plan) -> dict[str, Any]:
    out = {}
    for rate in plan.rates:

        def measure(url: str, repeat: int, rate: int = rate) -> Summary:
            return open_loop(url, requests, rate, plan.open_timing, seed=repeat).summary()

        out[str(rate)] = compare(alternate(urls, _counting_copies(measure), plan.repeats), SERVERS)
    return out


def _baseline(redis_url: str, prefix: str, requests: list[bytes], plan: Plan) -> dict[str, Any]:
    """The synchronous baseline once per level and rate. The levels run at once, each
    against a baseline server of its own, then the rates likewise: its time is its model's
    sleeps at a few requests a second, which leaves the shared core all but idle."""
    count = max(len(plan.levels), len(plan.rates))
    baseline = servers.sync_baseline
    with servers.running(
        *(baseline(redis_url, prefix, plan.baseline_deadline_s) for _ in range(count))
    ) as urls:
        levels = run_async(
            _gather(
                closed_loop_async(url, requests, n, plan.baseline_timing(n))
                for url, n in zip(urls, plan.levels, strict=False)
            )
        )
        for url in urls:
            servers.wait_idle(url, plan.baseline_deadline_s + 2)
        timing = plan.baseline_open_timing()
        rates = run_async(
            _gather(
                open_loop_async(url, requests, rate, timing)
                for url, rate in zip(urls, plan.rates, strict=False)
            )
        )
    return {
        "levels": {str(n): r.summary() for n, r in zip(plan.levels, levels, strict=True)},
        "open_loop": {str(n): r.summary() for n, r in zip(plan.rates, rates, strict=True)},
    }


async def _gather(runs: Iterable[Awaitable[LoadResult]]) -> list[LoadResult]:
    return list(await asyncio.gather(*runs))


def _workers(
    redis_url: str,
    prefix: str,
    requests: list[bytes],
    plan: Plan,
    shopper_server: Callable[..., servers.Server],
) -> dict[str, Any]:
    """One worker against WORKERS, closed loop, servers and load generator unpinned."""
    names = ["floor", "shopper"] if servers.shopper_has_workers_option() else ["floor"]
    starts = {"floor": servers.floor, "shopper": shopper_server}
    configs = ("1_worker", f"{WORKERS}_workers")
    out: dict[str, Any] = {"workers": WORKERS, "servers": names, "levels": {}}
    if "shopper" not in names:
        out["note"] = "shopper serve has no --workers option: the floor only"
    for name in names:
        start = starts[name]
        pair = (start(redis_url, prefix, 1, None), start(redis_url, prefix, WORKERS, None))
        with servers.running(*pair) as (one, many):
            for n in plan.worker_levels:

                def measure(url: str, _: int, n: int = n) -> Summary:
                    return closed_loop(url, requests, n, plan.worker_timing).summary()

                urls = {configs[0]: one, configs[1]: many}
                runs = alternate(urls, measure, plan.worker_repeats)
                out["levels"].setdefault(str(n), {})[name] = compare(runs, configs)
    return out


def _counting_copies(measure: Measure) -> Measure:
    """`measure`, with the pages the server answered from its copy of the popular lists
    meanwhile (`pages_from_copy`; Redis late or down: not the page path being measured)."""

    def counted(url: str, repeat: int) -> Summary:
        before = servers.pages_from_copy(url)
        summary = measure(url, repeat)
        summary["pages_from_copy"] = servers.pages_from_copy(url) - before
        return summary

    return counted


def alternate(urls: dict[str, str], measure: Measure, repeats: int) -> list[dict[str, Summary]]:
    """Per repeat, each server's summary; the servers alternate who goes first."""
    names = list(urls)
    runs = []
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        runs.append({name: measure(urls[name], r) for name in order})
    return runs


# -- the summaries -------------------------------------------------------------------


def compare(runs: list[dict[str, Summary]], names: tuple[str, str]) -> dict[str, Any]:
    """Each server's metrics over the repeats (counts summed, the rest median/min/max, a
    single repeat as is) and the second server's over the first's, within each repeat."""
    out: dict[str, Any] = {}
    for name in names:
        per_metric = {metric: [run[name][metric] for run in runs] for metric in runs[0][name]}
        out[name] = {
            metric: sum(values) if metric in COUNTS else _spread_or_one(values)
            for metric, values in per_metric.items()
        }
    first, second = names
    out[f"ratio_{second}_over_{first}"] = {
        metric: _spread(
            [run[second][metric] / run[first][metric] for run in runs if run[first][metric]]
        )
        for metric in RATIO_METRICS
    }
    return out


def _against_shopper(
    baseline: dict[str, Any], levels: dict[str, Any], opened: dict[str, Any]
) -> dict[str, Any]:
    """The baseline's runs beside shopper's median p99 at the same level or rate."""
    out: dict[str, Any] = {"levels": {}, "open_loop": {}}
    for section, shopper_side in (("levels", levels), ("open_loop", opened)):
        for key, summary in baseline[section].items():
            shopper_p99 = _median(shopper_side[key]["shopper"]["p99_ms"])
            ratio = summary["p99_ms"] / shopper_p99 if shopper_p99 else 0.0
            out[section][key] = {
                "sync_baseline": summary,
                "shopper_p99_ms": shopper_p99,
                "p99_ratio_over_shopper": round(ratio, 1),
                # More than 1% failed: the p99 counts failures at their bound.
                "p99_is_lower_bound": summary["errors"] > 0.01 * summary["requests"],
            }
    out["p99_ratio_at_peak"] = _peak(out["levels"], "connections")
    out["p99_ratio_at_peak_open_loop"] = _peak(out["open_loop"], "rate")
    return out


def _peak(entries: dict[str, Any], unit: str) -> dict[str, Any]:
    """The entry at the highest level or rate."""
    peak = max(entries, key=int)
    return {
        unit: int(peak),
        "ratio": entries[peak]["p99_ratio_over_shopper"],
        "lower_bound": entries[peak]["p99_is_lower_bound"],
    }


def _median(value: float | dict[str, float]) -> float:
    return value["median"] if isinstance(value, dict) else value


def _spread_or_one(values: list[float]) -> float | dict[str, float]:
    return values[0] if len(values) == 1 else _spread(values)


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page_load")
    parser.add_argument("--quick", action="store_true", help="fewer levels and rates, short runs")
    quick = parser.parse_args().quick
    redis_url = os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    print(json.dumps(run(redis_url, quick=quick), indent=2))


if __name__ == "__main__":
    main()
