"""Events per second through one processor, embedded and on Redis (and Kafka + Redis), the
same events; and the embedded processor's memory per 100k active shoppers.

Workload (`benchmarks.workload`): a catalog of `items` items and a history of 20,000 events
of other shoppers, then the timed traffic: `users` shoppers with `per_user` events each
(views, carts, purchases; each shopper keeps to two categories), with a stock or price
change after every 100th event, popular items selling out and coming back. The history
matters: re-ranking a shopper costs more once items have their neighbours (a shop that has
just opened ranks about a fifth faster). The traffic has many shoppers for its size, as a
shop's stream has: a micro-batch then rarely holds two events of one shopper (reported as
`lists_per_event`, about 1), so every event costs a re-rank; a backlog of a few very busy
shoppers would coalesce their events into one re-rank each, and flatter the figure.
Impressions (one per page served) are left out: they cost the processor less than a shop
event, so they would flatter it too.

Ranking is the default configuration's, in a data folder of the benchmark's own: no trained
model, so the live co-occurrence and popularity ranker re-ranks every touched shopper (the
learned ranker needs a trained model and the feature store, both absent). Micro-batches
are the default's. Each measurement runs in a process of its own, on jemalloc, as
`shopper serve` starts itself where the system has it (shopper.allocator); the embedded
mode also runs on CPython's own allocator (pymalloc) beside it (`embedded_pymalloc`), to
show what jemalloc, which gives the memory of expired shoppers back, costs. The
processor first works through the catalog and the history, untimed (it joins the Kafka
group meanwhile);
the shoppers' events are then put on the stream, and the clock runs from its next poll
until the last of them is applied and its list written. The modes take turns, `repeats`
times; each figure is the median, with the min and max beside it, and the processor's CPU
time per event (less disturbed by other work on a shared machine than the rate).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.cache import delete_prefix
from benchmarks.workload import catalog_events, shopper_events, with_catalog_changes
from shopper.allocator import allocator_env, release_free_memory
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.services.processor import Processor

RANKER = "live co-occurrence + popularity (no trained model; learned ranker off)"
HISTORY_SHOPPERS, HISTORY_PER_SHOPPER = 2000, 10  # the shop's past, processed untimed
RSS_SHOPPERS = 5000  # shoppers whose state the memory measurement adds
RSS_PER_SHOPPER = 10  # their events each
RSS_WARM_SHOPPERS = 1000  # drained first, so per-catalog state is in the baseline
DRAIN_TIMEOUT_S = 300.0


def run(
    kafka: str | None,
    redis_url: str | None,
    users: int = 8000,
    per_user: int = 5,
    items: int = 1000,
    repeats: int = 3,
) -> dict[str, Any]:
    """Events/s per mode (median of `repeats` interleaved runs, with min and max; and the
    processor's CPU time per event, which other work on the machine disturbs less), and
    the embedded processor's RSS per 100k active shoppers."""
    # The embedded mode also on CPython's own allocator, beside jemalloc (what `serve`
    # runs on): what giving memory back to the system costs (docs/memory.md).
    modes = {
        "embedded": ("memory://", "memory://", "jemalloc"),
        "embedded_pymalloc": ("memory://", "memory://", "pymalloc"),
    }
    if redis_url:
        modes["redis_state"] = ("memory://", redis_url, "jemalloc")
        if kafka:
            modes["kafka_redis"] = (f"kafka://{kafka}", redis_url, "jemalloc")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    load = os.getloadavg()[0]
    for _ in range(repeats):  # interleaved: each mode sees the same machine noise
        for mode, (stream, cache, allocator) in modes.items():
            args = ("--drain", stream, cache, users, per_user, items)
            runs[mode].append(_in_subprocess(*args, allocator=allocator))
    out: dict[str, Any] = {
        "events": len(traffic_events(users, per_user, items)),
        "shoppers": users,
        "items": items,
        "history_events": HISTORY_SHOPPERS * HISTORY_PER_SHOPPER,
        "ranker": RANKER,
        "repeats": repeats,
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    for mode, results in runs.items():
        out.update(_summary(mode, results))
    if "kafka_redis" in runs:
        out["kafka_redis_vs_embedded"] = round(
            out["kafka_redis_events_per_s"] / out["embedded_events_per_s"], 3
        )
    out["embedded_over_embedded_pymalloc"] = round(
        out["embedded_events_per_s"] / out["embedded_pymalloc_events_per_s"], 3
    )
    memory = ("--memory", RSS_SHOPPERS, RSS_PER_SHOPPER, items)
    out["memory"] = _in_subprocess(*memory, allocator="jemalloc")
    out["rss_mb_per_100k_shoppers"] = out["memory"]["rss_mb_per_100k_shoppers"]
    return out


def _summary(mode: str, results: list[dict[str, float]]) -> dict[str, Any]:
    rates = [r["events_per_s"] for r in results]
    return {
        f"{mode}_events_per_s": round(statistics.median(rates), 1),
        f"{mode}_events_per_s_min_max": [round(min(rates), 1), round(max(rates), 1)],
        f"{mode}_cpu_us_per_event": round(
            statistics.median(r["cpu_us_per_event"] for r in results), 1
        ),
        f"{mode}_lists_per_event": round(
            statistics.median(r["lists_per_event"] for r in results), 3
        ),
    }


def history_events(items: int) -> list[dict[str, Any]]:
    """The catalog, then the shop's past: other shoppers' events."""
    history = shopper_events(HISTORY_SHOPPERS, HISTORY_PER_SHOPPER, items, seed=2, id_prefix="h")
    return [*catalog_events(items), *with_catalog_changes(history, items, seed=2)]


def traffic_events(users: int, per_user: int, items: int) -> list[dict[str, Any]]:
    """The timed events: `users` shoppers' and the stock and price changes among them."""
    return with_catalog_changes(shopper_events(users, per_user, items), items)


def throughput(
    stream_url: str, cache_url: str, users: int, per_user: int, items: int
) -> dict[str, float]:
    """Events/s of one processor working through the traffic queued on the stream, each
    event applied and its shopper's list written, once it has processed the history; the
    process's CPU time per event meanwhile (the Kafka client's threads included); and the
    lists it wrote per event (below 1 where a batch held several events of a shopper)."""
    before = history_events(items)
    traffic = traffic_events(users, per_user, items)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    with tempfile.TemporaryDirectory() as data_dir:
        system = build_system(
            load_config(
                {},
                stream_url=stream_url,
                cache_url=cache_url,
                topic_prefix=prefix,
                redis_key_prefix=prefix,
                data_dir=data_dir,
            )
        )
        try:
            processor = system.processor()
            ingest(system, before)
            drain(processor, len(before))
            ingest(system, traffic)
            lists = processor.stats.lists_written
            started, cpu_started = time.perf_counter(), time.process_time()
            drain(processor, len(before) + len(traffic))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            processor.close()
            return {
                "events_per_s": len(traffic) / elapsed,
                "cpu_us_per_event": cpu / len(traffic) * 1e6,
                "lists_per_event": (processor.stats.lists_written - lists) / len(traffic),
            }
        finally:
            system.close()
            if cache_url.startswith("redis"):
                delete_prefix(cache_url, prefix)


def ingest(system: System, events: list[dict[str, Any]]) -> None:
    """Onto the stream through the API's ingest path, and stored there."""
    for start in range(0, len(events), 500):
        system.ingest.ingest(events[start : start + 500])
    system.event_log.flush(30)


def drain(processor: Processor, records: int) -> None:
    """Micro-batches until the processor has read `records` records in all."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while processor.stats.records < records:
        if time.monotonic() > deadline:
            raise RuntimeError(f"processor read {processor.stats.records} of {records}")
        processor.run_once()


def _in_subprocess(*args: str | int, allocator: str) -> dict[str, Any]:
    """This module's `--drain` or `--memory` in a fresh process on `allocator`
    (`shopper.allocator.allocator_env`): each measures one processor, with nothing of this
    process's (or an earlier measurement's) heap."""
    command = [sys.executable, "-m", "benchmarks.processor", *map(str, args)]
    env = {**allocator_env(allocator, os.environ), "OPENBLAS_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def memory_per_shopper(shoppers: int, per_user: int, items: int) -> dict[str, Any]:
    """RSS the embedded processor adds for `shoppers` new shoppers, scaled to 100k.

    One embedded system (in-memory stream, cache and state). The catalog and a first
    `RSS_WARM_SHOPPERS` shoppers are processed first, so state that grows with the catalog
    (popularity, co-occurrence, memos) is in the baseline. The new shoppers' events are
    then put on the stream (the stream's own copy of them counts in the baseline: a Kafka
    broker holds it elsewhere), the baseline RSS is read, their events are processed, and
    the RSS read again: the growth is their sessions, lists (fresh and last-known-good),
    applied event ids, outcomes and variant assignments."""
    with tempfile.TemporaryDirectory() as data_dir:
        system = build_system(load_config({}, data_dir=data_dir))
        try:
            processor = system.processor()
            warm = shopper_events(RSS_WARM_SHOPPERS, per_user, items, seed=2, id_prefix="w")
            first = [*catalog_events(items), *with_catalog_changes(warm, items)]
            ingest(system, first)
            drain(processor, len(first))
            later = shopper_events(shoppers, per_user, items, seed=3, id_prefix="m")
            ingest(system, later)
            total, events = len(first) + len(later), len(later)
            del warm, first, later
            before = _settled_rss()
            drain(processor, total)
            after = _settled_rss()
        finally:
            system.close()
    return {
        "rss_mb_per_100k_shoppers": round((after - before) / shoppers * 100_000 / 2**20, 1),
        "shoppers_added": shoppers,
        "events_added": events,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "method": "embedded processor in a fresh process: RSS growth while it applies "
        f"{shoppers} new shoppers' {per_user} events each (catalog and {RSS_WARM_SHOPPERS} "
        "shoppers processed before the baseline; their stream records in it), scaled to 100k",
    }


def _settled_rss() -> int:
    """RSS of what is live: after a collection, with the allocator's free pages given back
    (jemalloc keeps them otherwise, and the next allocations reuse them unseen)."""
    gc.collect()
    release_free_memory()
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drain"]:
        stream, cache, *sizes = sys.argv[2:7]
        print(json.dumps(throughput(stream, cache, *map(int, sizes))))
    elif sys.argv[1:2] == ["--memory"]:
        print(json.dumps(memory_per_shopper(*map(int, sys.argv[2:5]))))
    else:
        print(json.dumps(run(None, os.environ.get("SHOPPER_BENCH_REDIS")), indent=2))
