"""The most events a second a running deployment's processor takes (the freshness
benchmark's `max`), measured from outside through the API and the processor's /metrics.

- `drain`: a backlog posted as fast as the API takes it; the rate at which the processor
  then works it off (events applied, read every 0.1 s: the end is known to 0.1 s).
- `sustained`: rates stepping up towards the drain rate (STEP_SHARES), each sent open loop
  for a while; the last the processor keeps up with (its lag does not grow). Lower than
  the drain rate where the API's ingest shares the machine (or, in the embedded mode, the
  process) with the processor.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.http_load import run_async
from benchmarks.shop_traffic import (
    EventSource,
    ShopTraffic,
    applied_events,
    cpu_shares,
    post_all,
)

STEP_SHARES = (0.4, 0.55, 0.7, 0.85, 1.0)  # of the drain rate, tried in turn
KEEP_UP = 0.95  # processed over sent: kept up, give or take a micro-batch of 500


def drain(api: str, ops: str, shoppers: int, events_n: int, tag: str) -> dict[str, Any]:
    """The processor's maximum: a backlog posted as fast as the API takes it, then the
    rate at which the processor works it off (events applied, from its /metrics)."""
    events = EventSource(shoppers, seed=5, tag=f"{tag}-drain").take(events_n)
    first = applied_events(ops)
    post_started = time.perf_counter()
    run_async(post_all(api, events))
    sent_at, applied_then = time.perf_counter(), applied_events(ops)
    done = applied_then
    while done < first + len(events) and time.perf_counter() < sent_at + 120:
        time.sleep(0.1)
        done = applied_events(ops)
    drained_at = time.perf_counter()
    backlog = first + len(events) - applied_then
    return {
        "events": len(events),
        "post_s": round(sent_at - post_started, 2),
        "backlog_when_posted": backlog,
        "events_per_s": round((done - applied_then) / (drained_at - sent_at), 1),
        "drained": done >= first + len(events),
    }


def sustained(
    api: str, ops: str, ceiling: float, shoppers: int, step_s: float, steps: int, tag: str
) -> dict[str, Any]:
    """The highest of up to `steps` rates, stepping up towards the drain rate, that the
    deployment keeps up with while the API takes the events too: over the last half of
    `step_s` of open-loop events, the processor applies at least KEEP_UP of the rate
    sent. Stepping up, only the last rate tried leaves a backlog to wait out."""
    tried: list[dict[str, Any]] = []
    best = None
    for share in STEP_SHARES[:steps]:
        rate = max(100, int(ceiling * share) // 100 * 100)
        tried.append(_try_rate(api, ops, rate, shoppers, step_s, tag))
        if tried[-1]["processed_per_s"] < KEEP_UP * tried[-1]["sent_per_s"]:
            break
        best = rate
    return {
        "events_per_s": best or tried[0]["events_per_s"],
        "kept_up": best is not None,
        "tried": tried,
    }


def _try_rate(
    api: str, ops: str, rate: int, shoppers: int, step_s: float, tag: str
) -> dict[str, Any]:
    settle(ops)
    with ShopTraffic(api, rate, shoppers, seed=rate, tag=f"{tag}-at{rate}") as traffic:
        time.sleep(step_s / 2)
        applied, started = applied_events(ops), time.perf_counter()
        with cpu_shares({"api": api, "processor": ops}) as cpu:
            time.sleep(step_s / 2)
        processed = (applied_events(ops) - applied) / (time.perf_counter() - started)
    return {
        "events_per_s": rate,
        "sent_per_s": traffic.stats["events_per_s"],
        "processed_per_s": round(processed, 1),
        "cpu_share": cpu,
    }


def settle(ops: str, timeout_s: float = 120.0) -> None:
    """Until the processor has worked off what it was given (its count stands still)."""
    deadline = time.monotonic() + timeout_s
    last, still = applied_events(ops), 0
    while still < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = applied_events(ops)
        still = still + 1 if now == last else 0
        last = now


def conditions(burst: int, step_s: float, steps: int) -> str:
    shares = ", ".join(f"{share:.0%}" for share in STEP_SHARES[:steps])
    return (
        f"events_per_s: a backlog of {burst} events posted as fast as the API takes them, "
        "then the rate the processor works it off (events applied, from /metrics every "
        f"0.1 s); sustained: the highest of {shares} of that rate, tried in turn, each sent "
        f"open loop for {step_s:g} s, at which the processor applied at least {KEEP_UP:.0%} "
        "of the events sent over the second half; freshness at 'max' runs at that rate"
    )
