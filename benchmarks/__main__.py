"""`make bench`: every benchmark in one run, printed as one JSON object (and a summary).

Kafka runs on a tansu broker started here (as in the tests); Redis is the local server on
127.0.0.1:6379, database 0 under a key prefix of its own (SHOPPER_BENCH_REDIS overrides).
Each section measures the embedded and the real adapters side by side, interleaved where it
can, and reports medians, 99th percentiles and ratios.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from benchmarks import cache as cache_bench
from benchmarks import learned as learned_bench
from benchmarks import models as models_bench
from benchmarks import page_load as page_load_bench
from benchmarks import processor as processor_bench
from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.services.runtime import free_port

USERS = 5000
READS = 5000


def main() -> None:
    redis_url = os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    results: dict[str, Any] = {}
    with _kafka() as kafka:
        results["cache_read_page"] = _direct_reads(redis_url)
        results["page_path_http"] = _http_reads(redis_url)
        # The page path under load beside its floor (FastAPI + one async Redis GET).
        results["page_load"] = page_load_bench.run(redis_url)
        results["redis_list_bytes"] = _list_bytes(redis_url)
        results["processor"] = processor_bench.run(kafka, redis_url)
        results.update(_feature_store())
        results["models"] = models_bench.run()
        results["learned_ranker"] = learned_bench.run()
    print(json.dumps(results, indent=2))


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
    return {"feature_store": feature_store.run()}


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
