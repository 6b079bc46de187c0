"""A low-CPU closed-loop HTTP/1.1 load generator for one GET route.

N keep-alive connections on asyncio streams (uvloop when installed), each sending its next
request as soon as the last one is answered; only the status line and Content-Length are
parsed. Latency is client-side, from writing the request to reading the whole body.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from shopper.domain.stats import percentile


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a closed loop runs unmeasured, then measured."""

    warm_up_s: float = 1.0
    measure_s: float = 5.0


@dataclass(slots=True)
class LoadResult:
    """What one closed-loop run at one connection level saw in its measured window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    window_s: float = 0.0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms)
        return {
            "req_per_s": round(len(ordered) / self.window_s, 1) if self.window_s else 0.0,
            "p50_ms": round(percentile(ordered, 50), 3),
            "p99_ms": round(percentile(ordered, 99), 3),
            "p999_ms": round(percentile(ordered, 99.9), 3),
            "requests": len(ordered),
            "errors": self.errors,
        }


def closed_loop(url: str, requests: list[bytes], connections: int, timing: Timing) -> LoadResult:
    """A closed loop: each of `connections` keep-alive connections sends its next request
    as soon as the last one is answered, for the warm-up and then the measured window."""
    result: LoadResult = run_async(_closed_loop(url, requests, connections, timing))
    return result


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end on a fresh event loop (uvloop's when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def _closed_loop(
    url: str, requests: list[bytes], connections: int, timing: Timing
) -> LoadResult:
    host, port = url.removeprefix("http://").split(":")
    now = time.perf_counter()
    measure_from = now + timing.warm_up_s
    until = measure_from + timing.measure_s
    result = LoadResult(window_s=timing.measure_s)
    workers = [
        _connection(host, int(port), requests, c, measure_from, until, result)
        for c in range(connections)
    ]
    await asyncio.wait_for(asyncio.gather(*workers), timing.warm_up_s + timing.measure_s + 30)
    return result


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    seed: int,
    measure_from: float,
    until: float,
    result: LoadResult,
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < until:
            writer.write(requests[rng.randrange(len(requests))])
            try:
                status = await _response_status(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            # Counted when it started inside the window and ended inside it.
            if started >= measure_from and done <= until:
                if status == 200:
                    result.latencies_ms.append((done - started) * 1000)
                else:
                    result.errors += 1
    finally:
        writer.close()


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read one response; its status. Only the status line and Content-Length are parsed
    (both servers send Content-Length, never chunks)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status
