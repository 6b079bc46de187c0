"""The page benchmark's servers, their data and where they run.

- `fill_lists` writes the shoppers' lists through shopper's own Redis cache adapter;
  `copy_responses` stores, per shopper, the exact body shopper answers, for the floor and
  the synchronous baseline to return.
- `shopper`, `floor` and `sync_baseline` say how to start each server (`python -m shopper
  serve --role api`, or uvicorn), pinned to one core or left unpinned; `running` starts
  them together as subprocesses, until each /healthz answers, and stops them after.
- `pinned` pins the calling thread (the load generator) to a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from subprocess import DEVNULL

import redis

from benchmarks.bench_keys import SERVER_ENV
from benchmarks.http_load import run_async
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

LIST_SIZE = 50
K = 10
SERVER_CORE = 0
CLIENT_CORE = 1


def page_request(session: str) -> bytes:
    """The raw HTTP/1.1 request for one shopper's page."""
    return (
        f"GET /v1/recommendations?session_id={session}&k={K} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    ).encode()


# -- the data ------------------------------------------------------------------------


def fill_lists(redis_url: str, prefix: str, sessions: list[str]) -> None:
    """Each session's LIST_SIZE-item list, the global popular list and a stock set, written
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


def copy_responses(shopper_url: str, redis_url: str, prefix: str, sessions: list[str]) -> None:
    """Store, per shopper, the exact body shopper answers (personalized), at
    `<prefix>floor:<session>`: what the floor and the synchronous baseline return."""
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
            writer.write(page_request(sessions[n]))
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
            bodies[n] = await reader.readexactly(int(headers[b"content-length"]))
            if head[9:12] != b"200":
                raise RuntimeError(f"shopper answered {head[:12]!r} for {sessions[n]}")
        writer.close()

    await asyncio.gather(*(fetch(c) for c in range(connections)))
    return bodies


# -- the servers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    """How to start one server subprocess (`running` starts it)."""

    args: list[str]  # after `python`
    env: dict[str, str]
    port: int
    core: int | None  # pinned there; None: left unpinned
    data_dir_env: str | None = None  # set to a fresh temporary folder, when named

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def shopper(
    redis_url: str,
    prefix: str,
    workers: int = 1,
    core: int | None = SERVER_CORE,
    stream_url: str = "memory://",
) -> Server:
    """`shopper serve --role api` on the Redis cache under `prefix`, publishing each page's
    impression to `stream_url` (topics under `prefix`), no flag file (the champion only)."""
    env = {
        "SHOPPER_CACHE_URL": redis_url,
        "SHOPPER_REDIS_KEY_PREFIX": prefix,
        "SHOPPER_STREAM_URL": stream_url,
        "SHOPPER_TOPIC_PREFIX": prefix.rstrip(":") + ".",
    }
    port = free_port()
    args = ["-m", "shopper", "serve", "--role", "api", "--port", str(port)]
    if workers != 1:
        args += ["--workers", str(workers)]
    return Server(args, env, port, core, data_dir_env="SHOPPER_DATA_DIR")


def shopper_has_workers_option() -> bool:
    """Whether `shopper serve` takes `--workers` (read from its --help)."""
    out = subprocess.run(
        [sys.executable, "-m", "shopper", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    ).stdout
    return "--workers" in out


def floor(redis_url: str, prefix: str, workers: int = 1, core: int | None = SERVER_CORE) -> Server:
    """`benchmarks.floor_app` on uvicorn."""
    env = {"FLOOR_REDIS_URL": redis_url, "FLOOR_KEY_PREFIX": prefix}
    return _uvicorn("benchmarks.floor_app:app", env, workers, core)


def sync_baseline(
    redis_url: str, prefix: str, deadline_s: float, core: int | None = SERVER_CORE
) -> Server:
    """`benchmarks.sync_baseline_app` on uvicorn, one worker."""
    env = {
        "SYNC_BASELINE_REDIS_URL": redis_url,
        "SYNC_BASELINE_KEY_PREFIX": prefix,
        "SYNC_BASELINE_DEADLINE_S": str(deadline_s),
    }
    return _uvicorn("benchmarks.sync_baseline_app:app", env, 1, core)


def _uvicorn(app: str, env: dict[str, str], workers: int, core: int | None) -> Server:
    port = free_port()
    args = [
        *("-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers), "--log-level", "warning", "--no-access-log"),
    ]
    return Server(args, env, port, core)


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[list[str]]:
    """The servers started together, pinned as they say, once each /healthz answers;
    their URLs, in order. Stopped after."""
    # Only this run's settings: none of the caller's SHOPPER_* (a config file, flags...).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
    with contextlib.ExitStack() as stack:
        envs = [
            {**clean, **SERVER_ENV, **server.env, "OPENBLAS_NUM_THREADS": "1"} for server in servers
        ]
        for server, env in zip(servers, envs, strict=True):
            if server.data_dir_env:
                env[server.data_dir_env] = stack.enter_context(tempfile.TemporaryDirectory())
        procs: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop, procs)  # before the folders go
        for server, env in zip(servers, envs, strict=True):
            procs.append(subprocess.Popen([sys.executable, *server.args], env=env, stdout=DEVNULL))
            _place(procs[-1].pid, server.core)
        for server, proc in zip(servers, procs, strict=True):
            _wait_healthy(proc, server.url)
            _place(proc.pid, server.core)  # and any thread started meanwhile
        yield [server.url for server in servers]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_idle(baseline_url: str, timeout_s: float) -> None:
    """Until the synchronous baseline's pool is idle (its last run's leftovers gone)."""
    host, port = baseline_url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout_s
    state: dict[str, int] = {}
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/v1/pool")
        state = json.loads(conn.getresponse().read())
        conn.close()
        if not state["busy"] and not state["waiting"]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the synchronous baseline at {baseline_url} is still busy: {state}")


PAGE_CACHE_COUNTS = ("pages_from_copy", "page_read_timeouts")  # running totals


def pages_from_copy(url: str) -> int:
    """Pages the server answered from its copy so far (`/v1/stats`; 0 where it has none)."""
    return page_cache_counts(url).get("pages_from_copy", 0)


def page_cache_counts(url: str) -> dict[str, int]:
    """The server's page cache counters so far (`/v1/stats` `page_cache`: pages from the
    copy, page reads timed out); empty where it has none (the floor, memory mode)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/v1/stats")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        return {}  # the floor: no such route
    counts = json.loads(body).get("page_cache") or {}
    return {name: int(counts[name]) for name in PAGE_CACHE_COUNTS if name in counts}


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 60) -> None:
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


# -- pinning -------------------------------------------------------------------------


def cores() -> set[int]:
    """The cores this thread may run on (empty where the OS does not say)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


# The cores this process was given, read before any thread of it is pinned: a child
# inherits the pinned thread's affinity, so a server "left unpinned" is given these back.
MACHINE_CORES = frozenset(cores())


def _place(pid: int, core: int | None) -> None:
    """Every thread of `pid` onto `core`, or onto all of MACHINE_CORES when None (a
    thread's affinity is its own under Linux, and a child starts with its parent's)."""
    if not MACHINE_CORES or (core is not None and core not in MACHINE_CORES):
        return
    allowed = set(MACHINE_CORES) if core is None else {core}
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), allowed)


@contextlib.contextmanager
def pinned(core: int) -> Iterator[bool]:
    """This thread on `core` while inside (False, unpinned, when the machine lacks it or
    SERVER_CORE)."""
    before = cores()
    if core not in MACHINE_CORES or SERVER_CORE not in MACHINE_CORES:
        yield False
        return
    os.sched_setaffinity(0, {core})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)
