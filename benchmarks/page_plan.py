"""What the page benchmark runs, for how long, and how it says so (its `conditions`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from benchmarks import sync_baseline_app as baseline
from benchmarks.http_load import OPEN_LOOP_CONNECTIONS, Timing
from benchmarks.page_servers import CLIENT_CORE, LIST_SIZE, MACHINE_CORES, SERVER_CORE, K

LEVELS = (1, 8, 32, 128)
QUICK_LEVELS = (1, 8)
RATES = (500, 1000, 2000)
QUICK_RATES = (500,)
WORKERS = 2  # the recommended production setting: a worker per core
WORKER_LEVELS = (8, 128)
QUICK_WORKER_LEVELS = (8,)
WORKER_REPEATS = 2
# A page not answered within this long has failed; it also bounds an open loop that the
# server cannot keep up with (its backlog grows for as long as the run lasts).
OPEN_LOOP_TIMEOUT_S = 5.0
BASELINE_DEADLINE_S = 10.0
QUICK_BASELINE_DEADLINE_S = 2.0
BASELINE_MEASURE_S = 8.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What runs, and for how long."""

    levels: tuple[int, ...]
    rates: tuple[int, ...]
    worker_levels: tuple[int, ...]
    timing: Timing  # closed loop, shopper and floor (levels)
    open_timing: Timing  # open loop, shopper and floor
    worker_timing: Timing  # closed loop, 1 worker against WORKERS
    repeats: int
    baseline_deadline_s: float
    baseline_measure_s: float

    @property
    def worker_repeats(self) -> int:
        return min(self.repeats, WORKER_REPEATS)

    def baseline_timing(self, connections: int) -> Timing:
        """Warm up until the baseline's queue is full (at most its deadline); a request
        times out a second after the baseline's own deadline, so its 504 arrives first."""
        full_s = connections * baseline.mean_service_s(1.0) / baseline.POOL_SIZE
        warm_up_s = min(self.baseline_deadline_s, max(self.timing.warm_up_s, full_s))
        return Timing(warm_up_s, self.baseline_measure_s, self.baseline_deadline_s + 1)

    def baseline_open_timing(self) -> Timing:
        """Half shopper's window: past 500 req/s nearly every request times out anyway."""
        measure_s = self.open_timing.measure_s / 2
        return Timing(self.open_timing.warm_up_s, measure_s, self.baseline_deadline_s + 1)


def plan_for(quick: bool, timing: Timing | None, repeats: int) -> Plan:
    """The full plan, or the quick one. `timing`, when given, is shopper's and the floor's
    in every section; the baseline's windows are its own (longer: it answers a few
    requests a second)."""
    if quick:
        return Plan(
            levels=QUICK_LEVELS,
            rates=QUICK_RATES,
            worker_levels=QUICK_WORKER_LEVELS,
            timing=timing or Timing(0.5, 2.0),
            open_timing=_open_timing(timing or Timing(0.5, 1.5)),
            worker_timing=timing or Timing(0.5, 1.0),
            repeats=repeats,
            baseline_deadline_s=QUICK_BASELINE_DEADLINE_S,
            baseline_measure_s=max(1.0, timing.measure_s if timing else 2.0),
        )
    return Plan(
        levels=LEVELS,
        rates=RATES,
        worker_levels=WORKER_LEVELS,
        timing=timing or Timing(1.0, 4.0),
        open_timing=_open_timing(timing or Timing(0.5, 4.0)),
        worker_timing=timing or Timing(1.0, 3.0),
        repeats=repeats,
        baseline_deadline_s=BASELINE_DEADLINE_S,
        baseline_measure_s=BASELINE_MEASURE_S,
    )


def _open_timing(timing: Timing) -> Timing:
    return replace(timing, timeout_s=min(timing.timeout_s, OPEN_LOOP_TIMEOUT_S))


def conditions(
    plan: Plan,
    shoppers: int,
    pinned: bool,
    worker_servers: list[str],
    load_average: tuple[float, float, float],
) -> dict[str, Any]:
    """How each figure of the page benchmark was taken, for its readers (`load_average`:
    the machine's at the start, a hint of other work sharing it)."""
    where = (
        f"each server one uvicorn worker pinned to core {SERVER_CORE}, the load generator "
        f"pinned to core {CLIENT_CORE}, Redis unpinned"
        if pinned
        else "nothing pinned (the machine lacks the cores): servers, load generator and "
        "Redis share the cores"
    )
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "cores": sorted(MACHINE_CORES),
            "load_average_at_start": [round(x, 2) for x in load_average],
        },
        "data": {
            "shoppers": shoppers,
            "list_size": LIST_SIZE,
            "k": K,
            "cache": "local Redis, a key prefix of the run's own",
            "bytes": "floor and sync_baseline answer the body shopper gave each shopper",
        },
        "latency": (
            "client-side; percentiles over every request started (closed loop) or scheduled "
            "(open loop) in the measured window, followed to its end under continued load; "
            "a failed one counts at the time it failed, a timeout at its bound, so a "
            "percentile that reaches failures is a lower bound"
        ),
        "errors": "non_200 + connection_errors + timeouts (no answer within timeout_s)",
        "levels": {
            "load": "closed loop, raw HTTP/1.1 keep-alive connections, uvloop",
            "where": where,
            "connections": list(plan.levels),
            **_timing(plan.timing),
            "repeats": plan.repeats,
            "order": "floor and shopper alternate who goes first; ratios within a repeat",
        },
        "open_loop": {
            "load": (
                f"open loop over a pool of {OPEN_LOOP_CONNECTIONS} keep-alive connections, "
                "Poisson arrivals, seed = repeat index (both servers get the same schedule)"
            ),
            "where": where,
            "rates": list(plan.rates),
            **_timing(plan.open_timing),
            "repeats": plan.repeats,
            "latency": "from each request's scheduled time (no coordinated omission)",
            "late": (
                "requests that found all connections busy at their time: they waited for "
                "one, their wait is in their latency; counted, not errors"
            ),
            "send_lag": (
                "scheduled time to send: the load generator's own lag, and a late request's "
                "wait for a connection"
            ),
            "req_per_s": "200 answers that arrived inside the window, per second",
        },
        "sync_baseline": _baseline_conditions(plan, where),
        "workers": {
            "load": "closed loop as in levels",
            "where": (
                f"nothing pinned: with {WORKERS} workers on a {os.cpu_count()}-core machine "
                "the load generator and Redis share the cores with the servers; 1 worker "
                "measured under the same conditions beside them"
            ),
            "workers": [1, WORKERS],
            "servers": worker_servers,
            "connections": list(plan.worker_levels),
            **_timing(plan.worker_timing),
            "repeats": plan.worker_repeats,
        },
    }


def _baseline_conditions(plan: Plan, where: str) -> dict[str, Any]:
    return {
        "model": {
            "pool": (
                f"{baseline.POOL_SIZE} slots (asyncio.Semaphore), first come first served, no "
                "batching: the slot count of one inference server replica"
            ),
            "service_time": (
                f"lognormal, median {baseline.MEDIAN_S * 1000:.0f} ms x (1 + "
                f"{baseline.LOAD_FACTOR:g}u), sigma {baseline.SIGMA:g} + "
                f"{baseline.PEAK_EXTRA_SIGMA:g}u, u = (busy slots - 1) / "
                f"{baseline.POOL_SIZE - 1} when the request takes its slot"
            ),
            "simulated": "a sleep: the page server spends no CPU on the model",
            "deadline_s": plan.baseline_deadline_s,
            "past_deadline": "504",
            "seed": baseline.DEFAULT_SEED,
        },
        "where": where,
        "runs": (
            "once per connection level and rate; the levels at once, each against a "
            "baseline server of its own (all on the servers' core), then the rates likewise, "
            "each from an idle pool: the baseline's time is its model's sleeps, a few "
            "requests a second; client_cpu_share is that of all the concurrent runs"
        ),
        "levels": {str(n): _timing(plan.baseline_timing(n)) for n in plan.levels},
        "open_loop": _timing(plan.baseline_open_timing()),
        "p99_ratio": (
            "the baseline's p99 over shopper's median p99 at the same level or rate "
            "(different runs); a lower bound where the baseline's p99 reaches failures"
        ),
    }


def _timing(timing: Timing) -> dict[str, float]:
    return {
        "warm_up_s": timing.warm_up_s,
        "measure_s": timing.measure_s,
        "timeout_s": timing.timeout_s,
    }
