"""Low-CPU HTTP/1.1 load generators for one GET route: a closed loop and an open loop.

Both run on asyncio streams (uvloop when installed) over keep-alive connections and parse
only the status line and Content-Length.

- Closed loop: N connections, each sending its next request as soon as the last one is
  answered. Latency runs from writing the request to reading the whole body.
- Open loop: requests sent on a fixed schedule (Poisson or evenly spaced arrivals, seeded)
  whatever the server's pace, each handed to the first idle connection of a pool. Latency
  runs from the request's scheduled time, so time spent waiting for a free connection
  counts (no coordinated omission). The event loop's timers tick in milliseconds: requests
  are handed out up to 1 ms ahead of their time, and a request sent early is timed from its
  send instead (never less than the server took).

What both count: every request started (closed) or scheduled (open) inside the measured
window, followed to its end while the load goes on, so a slow request at the window's end
is not left out. The achieved rate (`req_per_s`) is the 200 answers that arrived inside
the window, per second. A request not answered within `Timing.timeout_s` of its start or schedule
is a timeout (open loop: sent or not; its connection is then replaced). Errors are
timeouts, connection errors and non-200 answers; they count in the latency percentiles at
the time they failed (a timeout at its bound), so a percentile that reaches them is a lower
bound. `late` (open loop) counts requests that found every connection of the pool busy at
their scheduled time: not an error, their wait is in their latency.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from shopper.domain.stats import percentile

CONNECTION_ERROR = -1  # status recorded for a request whose connection failed
TIMEOUT = -2  # status recorded for a request not answered within Timing.timeout_s
EARLY_S = 0.001  # open loop: how far ahead of its time a request may be handed out
TICK_S = 0.001  # open loop: the shortest sleep (shorter ones spin the event loop)
OPEN_LOOP_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a run warms up unmeasured, then measures; and each request's time limit."""

    warm_up_s: float = 1.0
    measure_s: float = 5.0
    timeout_s: float = 10.0


@dataclass(slots=True)
class LoadResult:
    """What one run saw of the requests it counted (see the module docstring)."""

    window_s: float
    open_loop: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    answered: int = 0  # 200 answers that arrived inside the window, whichever were counted
    non_200: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    late: int = 0
    send_lags_ms: list[float] = field(default_factory=list)
    client_cpu_share: float = 0.0

    @property
    def errors(self) -> int:
        return self.non_200 + self.connection_errors + self.timeouts

    def add(self, latency_s: float, status: int) -> None:
        self.latencies_ms.append(latency_s * 1000)
        if status == TIMEOUT:
            self.timeouts += 1
        elif status == CONNECTION_ERROR:
            self.connection_errors += 1
        elif status != 200:
            self.non_200 += 1

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms)
        out = {
            "req_per_s": round(self.answered / self.window_s, 1) if self.window_s else 0.0,
            "p50_ms": round(percentile(ordered, 50), 3),
            "p99_ms": round(percentile(ordered, 99), 3),
            "p999_ms": round(percentile(ordered, 99.9), 3),
            "requests": len(ordered),
            "errors": self.errors,
            "non_200": self.non_200,
            "connection_errors": self.connection_errors,
            "timeouts": self.timeouts,
            "client_cpu_share": round(self.client_cpu_share, 3),
        }
        if self.open_loop:
            lags = sorted(self.send_lags_ms)
            out["offered_req_per_s"] = round(len(ordered) / self.window_s, 1)
            out["late"] = self.late
            out["send_lag_p50_ms"] = round(percentile(lags, 50), 3)
            out["send_lag_p99_ms"] = round(percentile(lags, 99), 3)
        return out


def closed_loop(url: str, requests: list[bytes], connections: int, timing: Timing) -> LoadResult:
    """A closed loop: each of `connections` keep-alive connections sends its next request
    as soon as the last one is answered, for the warm-up and then the measured window."""
    result: LoadResult = run_async(closed_loop_async(url, requests, connections, timing))
    return result


async def closed_loop_async(
    url: str, requests: list[bytes], connections: int, timing: Timing
) -> LoadResult:
    """`closed_loop` on the running event loop (several at once share its CPU share)."""
    return await _ClosedLoop(url, requests, connections, timing).run()


def open_loop(
    url: str,
    requests: list[bytes],
    rate: float,
    timing: Timing,
    connections: int = OPEN_LOOP_CONNECTIONS,
    poisson: bool = True,
    seed: int = 0,
) -> LoadResult:
    """An open loop: `rate` requests a second on a seeded schedule (Poisson arrivals, or
    evenly spaced), over a pool of `connections` keep-alive connections."""
    run = open_loop_async(url, requests, rate, timing, connections, poisson, seed)
    result: LoadResult = run_async(run)
    return result


async def open_loop_async(
    url: str,
    requests: list[bytes],
    rate: float,
    timing: Timing,
    connections: int = OPEN_LOOP_CONNECTIONS,
    poisson: bool = True,
    seed: int = 0,
) -> LoadResult:
    """`open_loop` on the running event loop (several at once share its CPU share)."""
    return await _OpenLoop(url, requests, rate, timing, connections, poisson, seed).run()


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end on a fresh event loop (uvloop's when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class _Connection:
    """One keep-alive connection; replaced by a fresh one after any failure."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> _Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def get(self, request: bytes, timeout_s: float) -> int:
        """Send `request`; its status, CONNECTION_ERROR or TIMEOUT."""
        return (await self.fetch(request, timeout_s))[0]

    async def fetch(self, request: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Send `request`; its status and body (CONNECTION_ERROR or TIMEOUT, no body)."""
        assert self._reader is not None and self._writer is not None
        try:
            self._writer.write(request)
            async with asyncio.timeout(timeout_s):
                return await _response(self._reader)
        except TimeoutError:
            status = TIMEOUT
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            status = CONNECTION_ERROR
        self.close()
        await self.open()
        return status, b""

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class RawHTTP:
    """Requests to one server over keep-alive connections, one per request in flight: a
    benchmark's own reads and posts at a fraction of an HTTP library's CPU, so the
    measuring client takes as little as it can from the machine it measures."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self._host, port = url.removeprefix("http://").split(":")
        self._port = int(port)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = f"HTTP/1.1\r\nHost: {self._host}:{port}\r\n{extra}".encode()
        self._idle: list[_Connection] = []

    async def get(self, target: str, timeout_s: float) -> tuple[int, bytes]:
        """GET `target` (path and query, URL-encoded); its status and body."""
        return await self._send(b"GET " + target.encode() + b" " + self._head + b"\r\n", timeout_s)

    async def post(self, target: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """POST a JSON `body` to `target`; the answer's status and body."""
        head = b"POST " + target.encode() + b" " + self._head
        length = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        return await self._send(head + length + body, timeout_s)

    async def _send(self, request: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Sent again once on a new connection if its connection broke (one the server
        closed while idle): the routes measured are idempotent (events by event_id)."""
        conn = self._idle.pop() if self._idle else await _Connection(self._host, self._port).open()
        try:
            status, body = await conn.fetch(request, timeout_s)
            if status == CONNECTION_ERROR:  # fetch opened a new one
                status, body = await conn.fetch(request, timeout_s)
            return status, body
        finally:
            self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _ClosedLoop:
    def __init__(self, url: str, requests: list[bytes], connections: int, timing: Timing):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.requests = requests
        self.connections = connections
        self.timing = timing
        self.result = LoadResult(window_s=timing.measure_s)
        self.measure_from = self.until = 0.0
        self.unfinished = connections  # connections whose last counted request is pending
        self.finished = asyncio.Event()

    async def run(self) -> LoadResult:
        cpu, start = time.thread_time(), time.perf_counter()
        self.measure_from = start + self.timing.warm_up_s
        self.until = self.measure_from + self.timing.measure_s
        tasks = [asyncio.create_task(self._connection(c)) for c in range(self.connections)]
        bound = self.timing.warm_up_s + self.timing.measure_s + self.timing.timeout_s + 10
        await _while_running(asyncio.create_task(self.finished.wait()), tasks, bound)
        self.result.client_cpu_share = (time.thread_time() - cpu) / (time.perf_counter() - start)
        return self.result

    async def _connection(self, seed: int) -> None:
        rng = random.Random(seed)
        conn = await _Connection(self.host, self.port).open()
        done = False
        try:
            while True:
                started = time.perf_counter()
                if started >= self.until and not done:
                    # Requests go one at a time: this connection's counted ones are over.
                    done = True
                    self.unfinished -= 1
                    if not self.unfinished:
                        self.finished.set()
                request = self.requests[rng.randrange(len(self.requests))]
                status = await conn.get(request, self.timing.timeout_s)
                done_at = time.perf_counter()
                if status == 200 and self.measure_from <= done_at < self.until:
                    self.result.answered += 1
                if self.measure_from <= started < self.until:
                    self.result.add(done_at - started, status)
        finally:
            conn.close()


class _OpenLoop:
    def __init__(
        self,
        url: str,
        requests: list[bytes],
        rate: float,
        timing: Timing,
        connections: int,
        poisson: bool,
        seed: int,
    ) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.requests = requests
        self.rate = rate
        self.timing = timing
        self.connections = connections
        self.poisson = poisson
        self.rng = random.Random(seed)
        self.result = LoadResult(window_s=timing.measure_s, open_loop=True)
        self.jobs: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.idle = 0  # connections waiting for a job
        self.pending = 0  # counted requests not yet answered or failed
        self.measure_from = self.until = 0.0

    async def run(self) -> LoadResult:
        pool = await asyncio.gather(
            *(_Connection(self.host, self.port).open() for _ in range(self.connections))
        )
        cpu = time.thread_time()
        start = time.perf_counter()
        self.measure_from = start + self.timing.warm_up_s
        self.until = self.measure_from + self.timing.measure_s
        workers = [asyncio.create_task(self._worker(conn)) for conn in pool]
        bound = self.timing.warm_up_s + self.timing.measure_s + self.timing.timeout_s + 10
        try:
            await _while_running(asyncio.create_task(self._dispatch(start)), workers, bound)
        finally:
            for conn in pool:
                conn.close()
        self.result.client_cpu_share = (time.thread_time() - cpu) / (time.perf_counter() - start)
        return self.result

    async def _dispatch(self, start: float) -> None:
        """Hand out requests on schedule until every counted one is over (the load goes on
        meanwhile); past the last one's time limit, what is left counts as timeouts."""
        scheduled = start
        give_up = self.until + self.timing.timeout_s + 2
        while True:
            now = time.perf_counter()
            while scheduled <= now + EARLY_S:
                self._hand_out(scheduled)
                scheduled += self._gap()
            if scheduled >= self.until and not self.pending:
                return
            if now > give_up:
                for _ in range(self.pending):
                    self.result.add(self.timing.timeout_s, TIMEOUT)
                return
            await asyncio.sleep(max(scheduled - now - EARLY_S, TICK_S))

    def _hand_out(self, scheduled: float) -> None:
        if self.measure_from <= scheduled < self.until:
            self.pending += 1
            if self.idle <= self.jobs.qsize():
                self.result.late += 1
        self.jobs.put_nowait((scheduled, self.requests[self.rng.randrange(len(self.requests))]))

    def _gap(self) -> float:
        return self.rng.expovariate(self.rate) if self.poisson else 1 / self.rate

    async def _worker(self, conn: _Connection) -> None:
        while True:
            self.idle += 1
            scheduled, request = await self.jobs.get()
            self.idle -= 1
            sent = time.perf_counter()
            left_s = scheduled + self.timing.timeout_s - sent
            status = await conn.get(request, left_s) if left_s > 0 else TIMEOUT
            done_at = time.perf_counter()
            if status == 200 and self.measure_from <= done_at < self.until:
                self.result.answered += 1
            if not self.measure_from <= scheduled < self.until:
                continue
            if left_s > 0:
                self.result.send_lags_ms.append(max(0.0, sent - scheduled) * 1000)
            # A request still queued past its time limit is seen late: count it at its bound.
            latency_s = (
                self.timing.timeout_s if status == TIMEOUT else done_at - min(scheduled, sent)
            )
            self.result.add(latency_s, status)
            self.pending -= 1


async def _while_running(
    waiter: asyncio.Task[Any], tasks: list[asyncio.Task[None]], bound_s: float
) -> None:
    """Wait for `waiter` while `tasks` run, then cancel them all; raise what failed first,
    or TimeoutError after `bound_s`."""
    try:
        done, _ = await asyncio.wait(
            [waiter, *tasks], timeout=bound_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
    if not done:
        raise TimeoutError(f"the load did not finish within {bound_s:.0f} s")
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one response; its status and body. Only the status line and Content-Length are
    parsed (the servers measured send Content-Length, never chunks)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    return status, await reader.readexactly(length) if length else b""
