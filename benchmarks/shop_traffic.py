"""Background shop traffic for the freshness benchmark, and what it reads off the
deployment under it.

- `ShopTraffic`: events sent open loop (and a sample of page reads, whose `source` it
  tallies) by `python -m benchmarks.shop_traffic`, a process of its own, so the measuring
  process never waits on it. Events are `benchmarks.workload`'s seeded shoppers (views,
  carts, purchases over a catalog with category structure), a share of the views sent as
  clicks, stamped when sent.
- `applied_events`: the events a shopper process's processors have applied (/metrics).
- `cpu_shares`: the CPU time of shopper's processes over a block, per wall second, and
  the whole machine's (in cores busy: 2.0 is a 2-core machine flat out), with where it
  went by command (`command:NAME`, each at 0.02 of a core or more).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.bench_keys import INGEST
from benchmarks.http_load import RawHTTP, run_async
from benchmarks.workload import shopper_events
from shopper.domain.stats import percentile

ITEMS = 1000
PER_SHOPPER = 20  # events per shopper before the traffic repeats itself
CLICK_SHARE = 0.15  # of the workload's views, sent as clicks
TICK_S = 0.01  # the sender's clock: the events due are posted every tick, in one POST
MAX_BATCH = 500
REQUEST_TIMEOUT_S = 30.0  # as the httpx client's
STOP_TIMEOUT_S = 30.0
SAMPLE_AFTER_S = 1.0  # a page is sampled this long after its shopper's first event


def pool_page(n: int, pool: str = "", k: int = 10, shown: bool = True) -> str:
    """The page of shopper n of `pool` (signed in: the workload's events carry both ids);
    not `shown`: a measuring read, which records no impression."""
    path = f"/v1/recommendations?user_id={pool}u{n}&session_id={pool}s{n}&k={k}"
    return path if shown else f"{path}&impression=false"


def client(api: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return httpx.AsyncClient(base_url=api, timeout=30, limits=limits, headers=INGEST)


async def send(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, sent again once if the connection broke under it (a keep-alive
    connection the server closed as it was reused); its status checked. Events are
    idempotent by event_id, so a POST sent twice counts once."""
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.TransportError:
        response = await http.request(method, path, **kwargs)
    return response.raise_for_status()


class EventSource:
    """Endless shop events of a pool of `shoppers` (ids prefixed by `pool`: another pool is
    other shoppers), stamped with the time they are taken."""

    def __init__(self, shoppers: int, seed: int, tag: str, pool: str = "") -> None:
        self._events = [
            {**e, "user_id": f"{pool}{e['user_id']}", "session_id": f"{pool}{e['session_id']}"}
            for e in shopper_events(shoppers, PER_SHOPPER, ITEMS, seed=seed)
        ]
        self._rng = random.Random(seed)
        self._tag = tag
        self._taken = 0
        self._pool = pool
        # (when, n) of each shopper's first event taken, in order.
        self.arrivals: list[tuple[float, int]] = []
        self._arrived: set[str] = set()

    def take(self, n: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC).isoformat()
        out = []
        for _ in range(n):
            event = self._events[self._taken % len(self._events)]
            kind = event["type"]
            if kind == "view" and self._rng.random() < CLICK_SHARE:
                kind = "click"
            self._taken += 1
            out.append({**event, "event_id": f"{self._tag}-{self._taken}", "type": kind, "ts": now})
            if event["user_id"] not in self._arrived:
                self._arrived.add(event["user_id"])
                n = int(event["user_id"].removeprefix(self._pool).removeprefix("u"))
                self.arrivals.append((time.perf_counter(), n))
        return out


class ShopTraffic:
    """`rate` events a second of the pool's shoppers, open loop, and `samples_per_s` page
    reads of those whose first event went SAMPLE_AFTER_S before, their `source` tallied;
    from `python -m benchmarks.shop_traffic`, its figures in `stats` once the block ends."""

    def __init__(
        self,
        api: str,
        rate: float,
        shoppers: int,
        seed: int,
        tag: str,
        samples_per_s: float = 0.0,
        pool: str = "",
    ) -> None:
        self._args = [
            *("--api", api, "--rate", str(rate), "--shoppers", str(shoppers)),
            *("--seed", str(seed), "--tag", tag, "--samples-per-s", str(samples_per_s)),
            *("--pool", pool),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.stats: dict[str, Any] = {}

    def __enter__(self) -> ShopTraffic:
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.shop_traffic", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self._proc.stdout is not None
        if (ready := self._proc.stdout.readline().strip()) != "ready":
            self._close()
            raise RuntimeError(f"shop traffic did not start: {ready!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.close()  # the sender stops at the end of its input
        answer = self._proc.stdout.read()
        self._close()
        try:
            self.stats = json.loads(answer)
        except json.JSONDecodeError:
            raise RuntimeError(f"shop traffic failed: {answer[-500:]!r}") from None

    def _close(self) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


def main() -> None:
    """Send until standard input ends, then print the figures as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shop_traffic")
    parser.add_argument("--api", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--shoppers", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--samples-per-s", type=float, default=0.0)
    parser.add_argument("--pool", default="")
    args = parser.parse_args()
    source = EventSource(args.shoppers, args.seed, args.tag, args.pool)
    stop = threading.Event()
    threading.Thread(target=_stop_at_end_of_input, args=(stop,), daemon=True).start()
    print("ready", flush=True)
    sender = _send(args.api, args.rate, source, args.pool, args.samples_per_s, stop)
    print(json.dumps(run_async(sender)), flush=True)


def _stop_at_end_of_input(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


@dataclass(slots=True)
class _Tally:
    accepted: int = 0
    post_errors: int = 0
    post_ms: list[float] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def summary(self, seconds: float) -> dict[str, Any]:
        pages = sum(self.sources.values())
        return {
            "seconds": round(seconds, 2),
            "events_accepted": self.accepted,
            "events_per_s": round(self.accepted / seconds, 1) if seconds else 0.0,
            "post_p50_ms": round(percentile(self.post_ms, 50), 2),
            "post_p99_ms": round(percentile(self.post_ms, 99), 2),
            "post_errors": self.post_errors,
            "pages_sampled": pages,
            "sources": {s: round(n / pages, 3) for s, n in sorted(self.sources.items())},
        }


async def _send(
    api: str,
    rate: float,
    source: EventSource,
    pool: str,
    samples_per_s: float,
    stop: threading.Event,
) -> dict[str, Any]:
    """Every TICK_S, the events due so far in one POST, not waiting for earlier answers;
    and the page reads due, each of a shopper who arrived SAMPLE_AFTER_S before. Over raw
    keep-alive connections (`RawHTTP`): the sender is not the system measured, and an HTTP
    library's CPU per request would be taken from the processor beside it."""
    tally, rng = _Tally(), random.Random(len(pool))
    tasks: set[asyncio.Task[None]] = set()
    http = RawHTTP(api, INGEST)
    started = time.perf_counter()
    sent = sampled = ticks = 0
    while not stop.is_set():
        elapsed = time.perf_counter() - started
        due = min(int(rate * elapsed) - sent, MAX_BATCH)
        if due > 0:
            _spawn(tasks, _post(http, source.take(due), tally))
            sent += due
        ready = bisect.bisect(source.arrivals, (time.perf_counter() - SAMPLE_AFTER_S, -1))
        for _ in range(int(samples_per_s * elapsed) - sampled if ready else 0):
            shopper = source.arrivals[rng.randrange(ready)][1]
            _spawn(tasks, _sample(http, pool_page(shopper, pool), tally))
            sampled += 1
        ticks += 1
        await asyncio.sleep(max(0.0, started + ticks * TICK_S - time.perf_counter()))
    seconds = time.perf_counter() - started
    await asyncio.gather(*tasks)
    http.close()
    return tally.summary(seconds)


def _spawn(tasks: set[asyncio.Task[None]], work: Awaitable[None]) -> None:
    task: asyncio.Task[None] = asyncio.ensure_future(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _post(http: RawHTTP, events: list[dict[str, Any]], tally: _Tally) -> None:
    started = time.perf_counter()
    status, _ = await http.post("/v1/events", orjson.dumps(events), REQUEST_TIMEOUT_S)
    if status < 0:  # no answer (CONNECTION_ERROR, TIMEOUT)
        tally.post_errors += 1
        return
    tally.post_ms.append((time.perf_counter() - started) * 1000)
    if status == 202:
        tally.accepted += len(events)
    else:
        tally.post_errors += 1


async def _sample(http: RawHTTP, path: str, tally: _Tally) -> None:
    status, body = await http.get(path, REQUEST_TIMEOUT_S)
    if status == 200:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            tally.sources[orjson.loads(body)["source"]] += 1


async def post_all(api: str, events: list[dict[str, Any]], connections: int = 4) -> None:
    """Post `events` in batches of MAX_BATCH, `connections` at a time, as fast as taken."""
    gate = asyncio.Semaphore(connections)
    async with client(api) as http:

        async def post(batch: list[dict[str, Any]]) -> None:
            async with gate:
                await send(http, "POST", "/v1/events", json=batch)

        batches = [events[n : n + MAX_BATCH] for n in range(0, len(events), MAX_BATCH)]
        await asyncio.gather(*(post(b) for b in batches))


def applied_events(ops: str) -> int:
    """Events the processors of the process at `ops` have applied (from its /metrics)."""
    text = httpx.get(f"{ops}/metrics", timeout=10).text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("shopper_events_applied_total{")
        )
    )


def cpu_seconds(url: str) -> float | None:
    """CPU time (user and system) so far of this process's child serving `url` (started
    with `--port PORT`); None where /proc does not say."""
    port = url.rsplit(":", 1)[1].encode()
    clock = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in (p for p in _listdir("/proc") if p.isdigit()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"--port" in args and port in args:
            return (int(stat[11]) + int(stat[12])) / clock
    return None


@contextlib.contextmanager
def cpu_shares(urls: dict[str, str | None]) -> Iterator[dict[str, float]]:
    """Filled in when the block ends: CPU seconds per wall second, over the block, of each
    named child process (by the URL it serves; one serving several names is "process")."""
    named: dict[str, str] = {}
    for name, url in urls.items():
        if url:
            named[url] = "process" if url in named else name
    before = {url: cpu_seconds(url) for url in named}
    busy, commands = _machine_busy_s(), _cpu_by_command()
    started = time.perf_counter()
    shares: dict[str, float] = {}
    yield shares
    elapsed = time.perf_counter() - started
    for command, seconds in _cpu_by_command().items():  # where the machine's went
        if (share := (seconds - commands.get(command, 0.0)) / elapsed) >= 0.02:
            shares[f"command:{command}"] = round(share, 2)
    for url, name in named.items():
        after, first = cpu_seconds(url), before[url]
        if after is not None and first is not None:
            shares[name] = round((after - first) / elapsed, 2)
    if busy is not None and (now := _machine_busy_s()) is not None:
        # Every process's, this benchmark's and whatever else runs on the machine.
        shares["machine"] = round((now - busy) / elapsed, 2)


def _cpu_by_command() -> dict[str, float]:
    """CPU seconds so far of the machine's processes, summed by command (processes that
    ended meanwhile are not counted)."""
    clock = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seconds: dict[str, float] = {}
    for pid in (p for p in _listdir("/proc") if p.isdigit()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = _command(args)
        seconds[name] = seconds.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / clock
    return seconds


def _command(args: list[str]) -> str:
    """A process's short name: the program, or the module it runs, with its role."""
    name = os.path.basename(args[0]) if args and args[0] else "kernel"
    if "-m" in args[:-1]:
        name = args[args.index("-m") + 1]
    if "--role" in args[:-1]:
        name += f" --role {args[args.index('--role') + 1]}"
    return name


def _machine_busy_s() -> float | None:
    """CPU seconds all cores have spent busy (not idle, not waiting on I/O) since boot."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


if __name__ == "__main__":
    main()
