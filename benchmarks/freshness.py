"""A live deployment under events: list freshness per event rate, the processor's maximum,
sold-out items, and the page while the processor is healthy, slow or stopped.
`python -m benchmarks.freshness [--quick]` prints one JSON object.

shopper runs as users run it, from its CLI, in subprocesses:

- embedded: `shopper serve` (memory:// stream and cache), one process;
- kafka_redis: `shopper serve --role api` and `shopper serve --role processor` on a tansu
  broker and the local Redis, under a topic and key prefix of this run's own (its Redis
  keys are deleted after).

The API (and the embedded process) is pinned to core 0, as `benchmarks.page_load` pins
its servers; a processor process is left to the OS; this process and its event sender are
on core 1; tansu and Redis float. Background events are seeded synthetic shop traffic
(`benchmarks.shop_traffic`) sent open loop by a process of their own. The full run first
trains and promotes a model on another seed of the same traffic, so lists come from
trained models as in production; the quick run ranks with the live baseline.

Freshness is measured from outside, as a shop would see it: a probe shopper's event is
posted and, from its 202, the shopper's page is read every 10 ms until it serves a list
written after the event (a new `list_id`, `source` personalized: a list is rewritten only
when one of the shopper's own events is processed, impressions aside, and a probe shopper
has one event in flight at a time). The other sections: `benchmarks.processor_max`,
`benchmarks.sold_out`, `benchmarks.processor_states`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import processor_max, processor_states, sold_out
from benchmarks.bench_keys import ADMIN, INGEST
from benchmarks.cache import delete_prefix
from benchmarks.http_load import RawHTTP, Timing, run_async
from benchmarks.page_servers import (
    CLIENT_CORE,
    SERVER_CORE,
    Server,
    page_cache_counts,
    pinned,
    running,
)
from benchmarks.processor_states import page_state, with_ratios
from benchmarks.shop_traffic import (
    ITEMS,
    TICK_S,
    ShopTraffic,
    applied_events,
    client,
    cpu_shares,
    send,
)
from benchmarks.workload import catalog_events, shopper_events
from shopper.domain.stats import percentile
from shopper.services.runtime import free_port

POLL_S = 0.01
PAGE_TIMEOUT_S = 10.0  # a probe's page read
POLL_SHARE = 0.05  # later polls: one per this share of the time waited so far
PROBES_PER_S = 10.0
PROBE_SHOPPERS = 200
HISTORY_SEED = 101


@dataclass(frozen=True, slots=True)
class Plan:
    """How big and how long: the full run, or `QUICK` for a smoke test."""

    shoppers: int = 2000
    rates: tuple[int, ...] = (100, 1000)
    warm_up_s: float = 2.0
    window_s: float = 20.0
    burst: int = 20_000
    sold_out_items: int = 10
    page_rate: int = 1000
    page_timing: Timing = field(default_factory=lambda: Timing(2.0, 10.0))
    step_s: float = 8.0  # each rate tried for the sustained maximum
    steps: int = 5  # rates tried at most, from the drain rate down
    fresh_timeout_s: float = 5.0
    at_max: bool = True  # freshness at the sustained maximum too
    train: bool = True
    session_timeout_s: float | None = None  # Kafka group; None: shopper's default


QUICK = Plan(
    shoppers=300,
    rates=(1000,),
    warm_up_s=0.5,
    window_s=2.0,
    burst=3000,
    sold_out_items=1,
    page_rate=500,
    page_timing=Timing(0.5, 1.5),
    step_s=2.0,
    steps=1,
    fresh_timeout_s=2.0,
    at_max=False,
    train=False,
    session_timeout_s=2.0,
)


def run(kafka: str | None, redis_url: str | None, quick: bool = False) -> dict[str, Any]:
    """Freshness per event rate and sold-out times (embedded, and Kafka + Redis when both
    are given), and the page's p99 with the processor healthy, slow and stopped."""
    plan = QUICK if quick else Plan()
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    out: dict[str, Any] = {"conditions": conditions(plan)}
    with tempfile.TemporaryDirectory() as data_dir, pinned(CLIENT_CORE) as client_pinned:
        if plan.train:
            out["model"] = _train(Path(data_dir), plan)
        env = {"SHOPPER_DATA_DIR": data_dir}
        out["embedded"] = _embedded(env, plan, f"{tag}-e")
        if kafka and redis_url:
            out["kafka_redis"] = _kafka_redis(env, kafka, redis_url, plan, f"{tag}-k")
    out["conditions"]["pinned"] = client_pinned
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# -- the deployments -----------------------------------------------------------------


def _embedded(env: dict[str, str], plan: Plan, tag: str) -> dict[str, Any]:
    port = free_port()
    with running(Server(_serve("all", port), env, port, SERVER_CORE)) as (url,):
        return _under_events(url, url, plan, tag)


def _kafka_redis(
    env: dict[str, str], kafka: str, redis_url: str, plan: Plan, tag: str
) -> dict[str, Any]:
    prefix = f"{tag}:"
    env = {
        **env,
        "SHOPPER_STREAM_URL": f"kafka://{kafka}",
        "SHOPPER_CACHE_URL": redis_url,
        "SHOPPER_REDIS_KEY_PREFIX": prefix,
        "SHOPPER_TOPIC_PREFIX": f"{tag}.",
    }
    if plan.session_timeout_s is not None:
        env["SHOPPER_GROUP_SESSION_TIMEOUT_S"] = str(plan.session_timeout_s)
    try:
        with _role(env, "api") as api:
            with _role(env, "processor") as ops:
                out = _under_events(api, ops, plan, tag)
                took = out["seconds_by_section"]
                processor_max.settle(ops)  # healthy: no backlog left by the sections before
                pages = {"healthy": _timed(took, "healthy", _page, api, ops, plan, f"{tag}-h")}
            with _role(env, "slow") as ops:
                _timed(took, "slow_start", _wait_consuming, api, ops, f"{tag}-slow")
                pages["slow"] = _timed(took, "slow", _page, api, ops, plan, f"{tag}-s")
            pages["stopped"] = _timed(took, "stopped", _page, api, None, plan, f"{tag}-x")
    finally:
        delete_prefix(redis_url, prefix)
    out["page_by_processor_state"] = with_ratios(pages)
    return out


@contextlib.contextmanager
def _role(env: dict[str, str], role: str) -> Iterator[str]:
    """A shopper process of one role (`slow`: the processor made ten times slower)."""
    port = free_port()
    if role == "slow":
        args = ["-m", "benchmarks.slow_processor", "--port", str(port), "--slowdown", "10"]
    else:
        args = _serve(role, port)
    # The API on the server core; a processor left to the OS, as a second box would be.
    with running(Server(args, env, port, SERVER_CORE if role == "api" else None)) as (url,):
        yield url


def _serve(role: str, port: int) -> list[str]:
    return ["-m", "shopper", "serve", "--role", role, "--port", str(port)]


def _train(data_dir: Path, plan: Plan) -> dict[str, Any]:
    """A model trained and promoted on a week of the same shop's past (another seed)."""
    from shopper.codec import parse_event
    from shopper.config import load_config
    from shopper.model_tasks import run_train
    from shopper.training.data import from_events

    raw = shopper_events(plan.shoppers, 10, ITEMS, seed=HISTORY_SEED)
    start, step = time.time() - 7 * 86_400, 6 * 86_400 / len(raw)
    history = [parse_event({**e, "ts": start + n * step}).to_domain() for n, e in enumerate(raw)]
    started = time.perf_counter()
    trained = run_train(
        load_config({}, data_dir=data_dir), from_events(history), promote=True, show=False
    )
    return {
        "version": trained["version"],
        "history_events": len(history),
        "train_s": round(time.perf_counter() - started, 1),
    }


# -- events through a running deployment ---------------------------------------------


def _under_events(api: str, ops: str, plan: Plan, tag: str) -> dict[str, Any]:
    """`ops`: the URL of the process that runs the processor (its /metrics)."""
    took: dict[str, float] = {}
    _timed(took, "start", _wait_live, api, tag)
    drain = _timed(took, "max", processor_max.drain, api, ops, plan.shoppers, plan.burst, tag)
    levels = {
        str(rate): _timed(took, str(rate), _freshness_at, api, ops, rate, plan, f"{tag}-{rate}")
        for rate in plan.rates
    }
    ceiling = drain["events_per_s"]
    search = (api, ops, ceiling, plan.shoppers, plan.step_s, plan.steps, tag)
    kept_up = _timed(took, "sustained", processor_max.sustained, *search)
    if plan.at_max:
        top = kept_up["events_per_s"]
        levels["max"] = _timed(took, "at_max", _freshness_at, api, ops, top, plan, f"{tag}-max")
    args = (api, plan.shoppers, plan.sold_out_items, plan.warm_up_s, tag)
    sold = _timed(took, "sold_out", sold_out.measure, *args)
    return {
        "max_events_per_s": {**drain, "sustained": kept_up},
        "freshness": levels,
        "sold_out": sold,
        "seconds_by_section": took,
    }


def _wait_consuming(api: str, ops: str, tag: str, timeout_s: float = 90.0) -> None:
    """Until the processor at `ops` applies events (a backlog's first, maybe)."""
    shopper = f"{tag}-warm-up"
    first = [_view(shopper, "i0", f"{shopper}-1")]
    httpx.post(f"{api}/v1/events", json=first, headers=INGEST).raise_for_status()
    deadline = time.monotonic() + timeout_s
    while applied_events(ops) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the processor at {ops} applied nothing in {timeout_s:.0f} s")
        time.sleep(0.1)


def _timed(took: dict[str, float], name: str, section: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    try:
        return section(*args)
    finally:
        took[name] = round(time.perf_counter() - started, 1)
        print(f"freshness: {name} took {took[name]} s", file=sys.stderr, flush=True)


def _wait_live(api: str, tag: str, timeout_s: float = 90.0) -> None:
    """One event through the whole pipeline (a new consumer first joins its group)."""
    shopper = f"{tag}-warm-up"
    with httpx.Client(base_url=api, timeout=10, headers=INGEST) as http:
        # Only catalog items are recommended: the shop's catalog first, with the admin token.
        catalog = catalog_events(ITEMS)
        http.post("/v1/events", json=catalog, headers=ADMIN).raise_for_status()
        http.post("/v1/events", json=[_view(shopper, "i0", f"{shopper}-1")]).raise_for_status()
        deadline = time.monotonic() + timeout_s
        while _get_page(http, shopper)["source"] != "personalized":
            if time.monotonic() > deadline:
                raise RuntimeError(f"no list for {shopper} within {timeout_s:.0f} s")
            time.sleep(0.05)


def _freshness_at(api: str, ops: str, rate: int, plan: Plan, tag: str) -> dict[str, Any]:
    """Freshness of probe shoppers' events while background traffic makes up `rate`."""
    probes_per_s = min(PROBES_PER_S, rate / 10)
    processor_max.settle(ops)
    with ShopTraffic(api, rate - probes_per_s, plan.shoppers, seed=rate, tag=tag) as traffic:
        time.sleep(plan.warm_up_s)
        applied, started = applied_events(ops), time.perf_counter()
        pages_before = page_cache_counts(api)
        with cpu_shares({"api": api, "processor": ops}) as cpu:
            probes = run_async(_probe_freshness(api, probes_per_s, plan, tag))
        processed = (applied_events(ops) - applied) / (time.perf_counter() - started)
        pages = page_cache_counts(api)
    return {
        "target_events_per_s": rate,
        "sent_events_per_s": round(traffic.stats["events_per_s"] + probes.events_per_s, 1),
        "page_reads_per_s": round(probes.reads / probes.seconds, 1),
        "processed_per_s": round(processed, 1),
        "post_p99_ms": traffic.stats["post_p99_ms"],
        "cpu_share": cpu,
        # page reads that outwaited the page's bound, and pages served from the copy
        **{name: count - pages_before.get(name, 0) for name, count in pages.items()},
        **probes.summary(),
    }


@dataclass(slots=True)
class Probes:
    """Probe shoppers, each with one event in flight at a time, and what they saw."""

    http: httpx.AsyncClient  # the events
    pages: RawHTTP  # the page reads: most of the probes' requests, at little CPU
    timeout_s: float
    idle: deque[str]
    last: dict[str, str] = field(default_factory=dict)  # shopper -> list_id last served
    fresh_s: list[float | None] = field(default_factory=list)  # None: not within timeout_s
    events: int = 0
    reads: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    async def probe(self, shopper: str, item: str) -> float | None:
        """Seconds from the event's 202 to the first page read showing a list written
        after it; None when none did within `timeout_s` (the shopper is then retired)."""
        before = self.last.get(shopper) or (await self.read_page(shopper))["list_id"]
        event = _view(shopper, item, f"{shopper}-{uuid.uuid4().hex[:8]}")
        await send(self.http, "POST", "/v1/events", json=[event])
        accepted = time.perf_counter()
        self.events += 1
        while time.perf_counter() - accepted < self.timeout_s:
            page = await self.read_page(shopper)
            if page["list_id"] != before and page["source"] == "personalized":
                fresh_s = time.perf_counter() - accepted
                self.last[shopper] = page["list_id"]
                self.idle.append(shopper)
                return fresh_s
            # Every 10 ms at first, then every 5% of the time waited: a slow processor's
            # probes must not flood the API (and the machine) with reads.
            await asyncio.sleep(max(POLL_S, POLL_SHARE * (time.perf_counter() - accepted)))
        return None

    async def read_page(self, shopper: str) -> dict[str, Any]:
        self.reads += 1
        # A probe's poll is not a page shown: it must not add impressions to the load.
        target = f"/v1/recommendations?session_id={shopper}&impression=false"
        status, body = await self.pages.get(target, PAGE_TIMEOUT_S)
        if status != 200:
            raise RuntimeError(f"a probe's page read answered {status}: {body[:200]!r}")
        page: dict[str, Any] = orjson.loads(body)
        return page

    def summary(self) -> dict[str, Any]:
        """Percentiles over every probe, a probe never fresh counted at the timeout (a
        percentile reaching those is a lower bound)."""
        fresh_ms = [s * 1000 for s in self.fresh_s if s is not None]
        stale = len(self.fresh_s) - len(fresh_ms)
        times_ms = sorted(fresh_ms + [self.timeout_s * 1000] * stale)
        return {
            "probes": len(times_ms),
            "never_fresh": stale,
            "timeout_s": self.timeout_s,
            "p50_ms": round(percentile(times_ms, 50), 1),
            "p99_ms": round(percentile(times_ms, 99), 1),
            "max_ms": round(times_ms[-1], 1) if times_ms else 0.0,
            "p99_is_lower_bound": stale > 0.01 * len(times_ms),
        }


async def _probe_freshness(api: str, per_s: float, plan: Plan, tag: str) -> Probes:
    """Probes started open loop, `per_s` a second for the plan's window, each on an idle
    probe shopper; then waits for the last ones."""
    rng = random.Random(11)
    tasks = []
    pages = RawHTTP(api, INGEST)
    async with client(api) as http:
        idle = deque(f"{tag}-p{n}" for n in range(PROBE_SHOPPERS))
        probes = Probes(http, pages, plan.fresh_timeout_s, idle)
        started = time.perf_counter()
        for n in range(int(per_s * plan.window_s)):
            await asyncio.sleep(max(0.0, started + n / per_s - time.perf_counter()))
            if idle:
                shopper, item = idle.popleft(), f"i{rng.randrange(100)}"
                tasks.append(asyncio.create_task(probes.probe(shopper, item)))
        probes.fresh_s = list(await asyncio.gather(*tasks))
        probes.seconds = time.perf_counter() - started
    pages.close()
    return probes


def _page(api: str, ops: str | None, plan: Plan, tag: str) -> dict[str, Any]:
    return page_state(api, ops, plan.shoppers, plan.page_rate, plan.page_timing, tag)


# -- small helpers -------------------------------------------------------------------


def _view(session: str, item: str, event_id: str) -> dict[str, Any]:
    ts = datetime.now(UTC).isoformat()
    return {"event_id": event_id, "type": "view", "ts": ts, "session_id": session, "item_id": item}


def _get_page(http: httpx.Client, session: str) -> dict[str, Any]:
    response = http.get(
        "/v1/recommendations", params={"session_id": session, "impression": "false"}
    )
    response.raise_for_status()
    page: dict[str, Any] = response.json()
    return page


def conditions(plan: Plan) -> dict[str, Any]:
    """How each figure is taken, for the report."""
    settings = "default settings" + (
        f", but a {plan.session_timeout_s:g} s Kafka group session timeout (a quicker join)"
        if plan.session_timeout_s
        else ""
    )
    return {
        "deployments": f"embedded: `shopper serve` (memory:// stream and cache), one process "
        f"pinned to core {SERVER_CORE}; kafka_redis: `shopper serve --role api` pinned to core "
        f"{SERVER_CORE} and `shopper serve --role processor` unpinned, a tansu broker and the "
        f"local Redis (both unpinned); the measuring process and its event sender on core "
        f"{CLIENT_CORE}; {settings}",
        "model": "trained and promoted on a week of the same shop's past (another seed)"
        if plan.train
        else "none: the live co-occurrence baseline ranks",
        "traffic": f"{plan.shoppers} signed-in shoppers over {ITEMS} items "
        "(benchmarks.workload): 72% views, 13% clicks, 10% add_to_cart, 5% purchases, sent "
        f"open loop by a process of its own, the events due every {TICK_S * 1000:.0f} ms in "
        "one POST",
        "freshness": f"{PROBES_PER_S:g} probe shoppers' views a second (a tenth of the rate "
        "at most) among background events making up the rate; from the POST's 202 to the "
        f"first page read (one every {POLL_S * 1000:.0f} ms, then every "
        f"{POLL_SHARE:.0%} of the time waited) serving a list written after it; "
        f"never_fresh: not within {plan.fresh_timeout_s:g} s, counted as that in the "
        f"percentiles; {plan.window_s:g} s per rate; the probes' page reads "
        "(page_reads_per_s) record no impression (impression=false) and go over raw "
        "keep-alive connections, so the measuring process takes little of the CPU the "
        "processor needs; cpu_share gives each process's share in cores (command:NAME: "
        "every process on the machine, by command), page_read_timeouts and pages_from_copy "
        "count the API's page reads that outwaited its bound over the window",
        "max": processor_max.conditions(plan.burst, plan.step_s, plan.steps),
        "sold_out": sold_out.conditions(plan.sold_out_items),
        "page_by_processor_state": processor_states.conditions(plan.page_rate, plan.page_timing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.freshness")
    parser.add_argument("--quick", action="store_true", help="a smoke test: short windows")
    quick = parser.parse_args().quick
    redis_url = os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    from tests.fixtures.kafka import tansu_broker

    with tansu_broker(free_port()) as kafka:
        print(json.dumps(run(kafka, redis_url, quick=quick), indent=2))


if __name__ == "__main__":
    main()
