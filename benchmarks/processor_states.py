"""The page while the processor is healthy, slow or stopped (the freshness benchmark's
last section): page p99 under open-loop reads, and what the pages were served from.

The processor states themselves are the caller's to set up (a `shopper serve --role
processor` process, `benchmarks.slow_processor`, or none); this measures one state.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.http_load import Timing, open_loop
from benchmarks.shop_traffic import (
    SAMPLE_AFTER_S,
    ShopTraffic,
    applied_events,
    cpu_shares,
    pool_page,
)

EVENTS_PER_S = 300  # background events/s while the page is measured
SAMPLES_PER_S = 20.0  # page reads a second whose `source` the event sender tallies
STATES = ("healthy", "slow", "stopped")


def page_state(
    api: str, ops: str | None, shoppers: int, rate: int, timing: Timing, tag: str
) -> dict[str, Any]:
    """Page latency at `rate` req/s open loop over a pool of `shoppers` new to the shop
    (named by `tag`) while EVENTS_PER_S events of theirs flow; `ops`: the processor's
    process (None: no processor is running)."""
    pool = f"{tag}-"
    requests = [
        f"GET {pool_page(n, pool)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for n in range(shoppers)
    ]
    with ShopTraffic(
        api, EVENTS_PER_S, shoppers, seed=3, tag=tag, samples_per_s=SAMPLES_PER_S, pool=pool
    ) as traffic:
        applied, started = (applied_events(ops) if ops else 0), time.perf_counter()
        with cpu_shares({"api": api, "processor": ops}) as cpu:
            summary = open_loop(api, requests, rate, timing).summary()
        seconds = time.perf_counter() - started
        processed = (applied_events(ops) - applied) / seconds if ops else 0.0
    return {
        **summary,
        "events_per_s": traffic.stats["events_per_s"],
        "processed_per_s": round(processed, 1),
        "cpu_share": cpu,
        "sources": traffic.stats["sources"],
    }


def with_ratios(pages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The states' figures and each state's p99 over the healthy one's."""
    healthy = pages["healthy"]["p99_ms"]
    ratios = {s: round(pages[s]["p99_ms"] / healthy, 3) if healthy else 0.0 for s in pages}
    return {**pages, "p99_over_healthy": ratios}


def conditions(rate: int, timing: Timing) -> str:
    return (
        f"per state, a pool of shoppers new to the shop: {EVENTS_PER_S} events/s of theirs "
        f"and GET /v1/recommendations of theirs at {rate} req/s open loop "
        f"(benchmarks.http_load), {timing.measure_s:g} s after {timing.warm_up_s:g} s of "
        "warm-up; healthy (`--role processor`), slow (benchmarks.slow_processor: each "
        "micro-batch takes 10x as long) and stopped (no processor process); each page read "
        f"also publishes an impression; sources: of {SAMPLES_PER_S:g} page reads a second, "
        f"each of a shopper whose first event went {SAMPLE_AFTER_S:g} s before, "
        "sampled by the event sender"
    )
