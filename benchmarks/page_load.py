"""The page path under load, against a floor: `GET /v1/recommendations` req/s and latency.

Two servers answer the same shoppers with the same bytes:

- shopper: `python -m shopper serve --role api` on the Redis cache (a key prefix of this
  run's own; the stream is `memory://`, so each page's impression is kept in the API's
  memory, unread), 5,000 shoppers' 50-item session lists written through shopper's own
  cache adapter;
- floor: `benchmarks.floor_app`, FastAPI on uvicorn doing one async Redis GET of the
  response shopper gave for that shopper (fetched once per shopper before the runs).

Both run one uvicorn worker pinned to core 0; the load generator, a closed loop over N
keep-alive connections (raw HTTP/1.1 on asyncio streams, uvloop when installed: it parses
only the status line and Content-Length), runs pinned to core 1. Redis is the local
server, left unpinned. Per connection level, after a warm-up, each server is measured in
turn (the order alternating between repeats); req/s and client-side p50/p99/p99.9 (ms)
are reported as medians with min/max over the repeats, and shopper/floor ratios are taken
within each repeat.

`python -m benchmarks.page_load [--quick]` prints one JSON object. Redis: database 0 of
127.0.0.1:6379 unless SHOPPER_BENCH_REDIS says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from benchmarks.cache import delete_prefix
from benchmarks.http_load import Timing, closed_loop, run_async
from shopper.adapters.redis_cache import RedisRecommendationCache
from shopper.adapters.system_clock import SystemClock
from shopper.config import load_config
from shopper.domain.event import StockChange
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    RecommendationList,
    ScoredItem,
    Source,
)
from shopper.ports.cache import ListKey
from shopper.services.runtime import free_port

SHOPPERS = 5000
LIST_SIZE = 50
K = 10
REPEATS = 3
LEVELS = (1, 8, 32, 128)
QUICK_LEVELS = (1, 8)
SERVER_CORE = 0
CLIENT_CORE = 1
SERVERS = ("floor", "shopper")


def run(
    redis_url: str,
    quick: bool = False,
    timing: Timing | None = None,
    repeats: int = REPEATS,
    shoppers: int = SHOPPERS,
) -> dict[str, Any]:
    timing = timing or (Timing(0.5, 2.0) if quick else Timing())
    levels = QUICK_LEVELS if quick else LEVELS
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    sessions = [f"bench-s{n}" for n in range(shoppers)]
    started = time.perf_counter()
    try:
        with _servers(redis_url, prefix, sessions) as urls, _pinned(CLIENT_CORE) as pinned:
            runs = _measure_all(urls, sessions, levels, repeats, timing)
    finally:
        delete_prefix(redis_url, prefix)
    out: dict[str, Any] = {
        "shoppers": shoppers,
        "k": K,
        "repeats": repeats,
        "warm_up_s": timing.warm_up_s,
        "measure_s": timing.measure_s,
        "pinned": pinned,
        "levels": {str(n): _level_summary(runs[n]) for n in levels},
        "seconds": round(time.perf_counter() - started, 1),
    }
    return out


def _measure_all(
    urls: dict[str, str],
    sessions: list[str],
    levels: tuple[int, ...],
    repeats: int,
    timing: Timing,
) -> dict[int, list[dict[str, dict[str, float]]]]:
    """Per level, per repeat, each server's summary; servers alternate who goes first."""
    runs: dict[int, list[dict[str, dict[str, float]]]] = {n: [] for n in levels}
    requests = [_request(session) for session in sessions]
    for r in range(repeats):
        for n in levels:
            order = SERVERS if r % 2 == 0 else tuple(reversed(SERVERS))
            runs[n].append(
                {name: closed_loop(urls[name], requests, n, timing).summary() for name in order}
            )
    return runs


def _level_summary(repeats: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SERVERS:
        per_metric = {metric: [run[name][metric] for run in repeats] for metric in repeats[0][name]}
        out[name] = {
            metric: values[0] if len(values) == 1 else _spread(values)
            for metric, values in per_metric.items()
        }
        out[name]["errors"] = sum(per_metric["errors"])
    out["ratio_shopper_over_floor"] = {
        metric: _spread(
            [
                run["shopper"][metric] / run["floor"][metric]
                for run in repeats
                if run["floor"][metric]
            ]
        )
        for metric in ("req_per_s", "p50_ms", "p99_ms", "p999_ms")
    }
    return out


def _ratio(run: dict[str, dict[str, float]], metric: str) -> float:
    return run["shopper"][metric] / run["floor"][metric]


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _request(session: str) -> bytes:
    return (
        f"GET /v1/recommendations?session_id={session}&k={K} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    ).encode()


# -- the servers ---------------------------------------------------------------------


@contextlib.contextmanager
def _servers(redis_url: str, prefix: str, sessions: list[str]) -> Iterator[dict[str, str]]:
    """shopper and the floor, filled with the same shoppers, both pinned to SERVER_CORE."""
    _fill_lists(redis_url, prefix, sessions)
    with tempfile.TemporaryDirectory() as data_dir:
        shopper_env = {
            "SHOPPER_CACHE_URL": redis_url,
            "SHOPPER_REDIS_KEY_PREFIX": prefix,
            "SHOPPER_STREAM_URL": "memory://",
            "SHOPPER_DATA_DIR": data_dir,  # no flag file there: the champion only
        }
        port = free_port()
        shopper_cmd = ["-m", "shopper", "serve", "--role", "api", "--port", str(port)]
        with _server(shopper_cmd, shopper_env, port) as shopper_url:
            _copy_responses(shopper_url, redis_url, prefix, sessions)
            floor_env = {"FLOOR_REDIS_URL": redis_url, "FLOOR_KEY_PREFIX": prefix}
            port = free_port()
            floor_cmd = [
                *("-m", "uvicorn", "benchmarks.floor_app:app", "--host", "127.0.0.1"),
                *("--port", str(port), "--workers", "1", "--log-level", "warning"),
                "--no-access-log",
            ]
            with _server(floor_cmd, floor_env, port) as floor_url:
                yield {"floor": floor_url, "shopper": shopper_url}


def _fill_lists(redis_url: str, prefix: str, sessions: list[str]) -> None:
    """Each session's 50-item list, the global popular list and a stock set, written
    through shopper's own Redis cache adapter."""
    config = load_config({}, cache_url=redis_url, redis_key_prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    cache = RedisRecommendationCache(
        client, SystemClock(), config.fresh_ttl_s, config.lkg_ttl_s, prefix
    )
    rng = random.Random(3)
    lists = [(ListKey(f"s:{s}", DEFAULT_VARIANT), _list(rng)) for s in sessions]
    for start in range(0, len(lists), 500):
        cache.write_lists(lists[start : start + 500])
    cache.write_popular("global", _list(rng))
    gone = [f"sku-{rng.randrange(100_000):06d}" for _ in range(2000)]
    cache.set_stock([StockChange(item, False, time.time()) for item in gone])
    client.close()


def _list(rng: random.Random) -> RecommendationList:
    items = tuple(
        ScoredItem(f"sku-{rng.randrange(100_000):06d}", rng.random()) for _ in range(LIST_SIZE)
    )
    return RecommendationList(
        items, DEFAULT_VARIANT, Source.PERSONALIZED, time.time(), uuid.uuid4().hex
    )


def _copy_responses(shopper_url: str, redis_url: str, prefix: str, sessions: list[str]) -> None:
    """Store for the floor, per shopper, the exact body shopper answers (personalized)."""
    bodies = run_async(_fetch_all(shopper_url, sessions))
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for session, body in zip(sessions, bodies, strict=True):
        if json.loads(body)["source"] != Source.PERSONALIZED.value:
            raise RuntimeError(f"shopper did not serve {session}'s own list: {body[:200]!r}")
        pipe.set(f"{prefix}floor:{session}", body)
    pipe.execute()
    client.close()


async def _fetch_all(url: str, sessions: list[str], connections: int = 8) -> list[bytes]:
    host, port = url.removeprefix("http://").split(":")
    bodies: list[bytes] = [b""] * len(sessions)

    async def fetch(first: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for n in range(first, len(sessions), connections):
            writer.write(_request(sessions[n]))
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
            bodies[n] = await reader.readexactly(int(headers[b"content-length"]))
            if head[9:12] != b"200":
                raise RuntimeError(f"shopper answered {head[:12]!r} for {sessions[n]}")
        writer.close()

    await asyncio.gather(*(fetch(c) for c in range(connections)))
    return bodies


@contextlib.contextmanager
def _server(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """A server subprocess pinned to SERVER_CORE, once /healthz answers; stopped after."""
    # Only this run's settings: none of the caller's SHOPPER_* (a config file, flags...).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
    proc = subprocess.Popen(
        [sys.executable, *args],
        env={**clean, **env, "OPENBLAS_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _pin_process(proc.pid, SERVER_CORE)
        _wait_healthy(proc, url)
        _pin_process(proc.pid, SERVER_CORE)  # and any thread started meanwhile
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 60) -> None:
    import http.client

    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"benchmark server {proc.args!r} did not start")
        time.sleep(0.1)


def _cores() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def _pin_process(pid: int, core: int) -> None:
    """Every thread of `pid` onto `core` (a thread's affinity is its own under Linux)."""
    if core not in _cores():
        return
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), {core})


@contextlib.contextmanager
def _pinned(core: int) -> Iterator[bool]:
    """This thread on `core` while inside (False, unpinned, when the machine lacks it)."""
    before = _cores()
    if core not in before or SERVER_CORE not in before:
        yield False
        return
    os.sched_setaffinity(0, {core})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page_load")
    parser.add_argument("--quick", action="store_true", help="1 and 8 connections, 2 s each")
    quick = parser.parse_args().quick
    redis_url = os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    print(json.dumps(run(redis_url, quick=quick), indent=2))


if __name__ == "__main__":
    main()
