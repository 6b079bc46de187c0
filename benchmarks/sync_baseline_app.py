"""The synchronous baseline: a page server that calls a model on the request path.

`GET /v1/recommendations?session_id=&k=` waits for one inference, then answers the same
bytes as the floor (`benchmarks.floor_app`: one async Redis GET of
`<prefix>floor:<session_id>`). FastAPI on uvicorn, like shopper and the floor.

The model is simulated, and generously: it sleeps, so the page server spends no CPU on it,
as when the model runs on an inference server (or a GPU) beside the page server.

- Pool: POOL_SIZE = 8 inference slots (an `asyncio.Semaphore`), taken first come, first
  served; no batching. Eight is a usual slot count for one inference server replica (the
  concurrent batch slots of a GPU model server, or an 8-core CPU worker pool); with its
  pool full it serves about 7 requests a second (8 slots / 1.22 s), the scale one replica
  of such a service holds. Beyond that, requests queue.
- Service time: lognormal (seeded, SYNC_BASELINE_SEED), drawn when a request takes its
  slot. With u = (busy slots - 1) / (POOL_SIZE - 1) at that moment (0 alone, 1 with the
  pool full), the median is 340 ms x (1 + 2u) and sigma 0.5 + 0.1u: alone, median 340 ms
  and p99 1.1 s; with the pool full the median triples to 1.02 s (mean 1.22 s: the seed's
  "340 ms normal, 1.2 s at peak") and the tail is heavier (p99 4.1 s). Contention for the
  accelerator and memory is what makes a busy inference server slower per request.
- Deadline: a request not answered within SYNC_BASELINE_DEADLINE_S (default 10 s) of
  its arrival gets a 504 (a page server's timeout on its model call). A request whose
  client has gone leaves the queue or its slot (served to no one), so one run's leftovers
  do not slow the next.
- `GET /v1/pool`: busy slots and queued requests, for the benchmark to wait for idle.

`SYNC_BASELINE_REDIS_URL=redis://... SYNC_BASELINE_KEY_PREFIX=bench-x: python -m uvicorn
benchmarks.sync_baseline_app:app --port P`
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response

POOL_SIZE = 8
MEDIAN_S = 0.340
LOAD_FACTOR = 2.0  # the median's multiplier is 1 + LOAD_FACTOR * u
SIGMA = 0.5
PEAK_EXTRA_SIGMA = 0.1  # sigma is SIGMA + PEAK_EXTRA_SIGMA * u
DEFAULT_DEADLINE_S = 10.0
DEFAULT_SEED = 7


def mean_service_s(u: float) -> float:
    """The mean service time at utilisation `u` (a lognormal's mean: median x e^(sigma²/2))."""
    sigma = SIGMA + PEAK_EXTRA_SIGMA * u
    return MEDIAN_S * (1 + LOAD_FACTOR * u) * math.exp(sigma * sigma / 2)


class InferencePool:
    """POOL_SIZE slots; `infer()` waits for one, then holds it for one service time."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.busy = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(size)
        self._rng = rng

    def service_time_s(self) -> float:
        """One service time at the pool's present occupancy (this request included)."""
        u = (self.busy - 1) / (self.size - 1) if self.size > 1 else 0.0
        sigma = SIGMA + PEAK_EXTRA_SIGMA * u
        return MEDIAN_S * (1 + LOAD_FACTOR * u) * math.exp(self._rng.gauss(0.0, sigma))

    async def infer(self) -> None:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.busy += 1
        try:
            await asyncio.sleep(self.service_time_s())
        finally:
            self.busy -= 1
            self._slots.release()


# A standalone process started by the benchmark: its environment is its only config.
_PREFIX = os.environ.get("SYNC_BASELINE_KEY_PREFIX", "bench-floor:")
_DEADLINE_S = float(os.environ.get("SYNC_BASELINE_DEADLINE_S", DEFAULT_DEADLINE_S))
_client = aioredis.Redis.from_url(
    os.environ.get("SYNC_BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0")
)
_pool: InferencePool | None = None  # made on first use, inside the server's event loop

app = FastAPI(title="synchronous baseline", docs_url=None, redoc_url=None, openapi_url=None)


def pool() -> InferencePool:
    global _pool
    if _pool is None:
        seed = int(os.environ.get("SYNC_BASELINE_SEED", DEFAULT_SEED))
        _pool = InferencePool(POOL_SIZE, random.Random(seed))
    return _pool


@app.get("/v1/recommendations")
async def get_recommendations(request: Request, session_id: str, k: int = 10) -> Response:
    """One inference, then the floor's stored response for this shopper; 504 past the
    deadline, 404 when there is none (`k` is accepted and ignored, as by the floor)."""
    try:
        async with asyncio.timeout(_DEADLINE_S):
            if not await _unless_gone(request, pool().infer()):
                return Response(status_code=499)  # nobody is listening
    except TimeoutError:
        return Response(status_code=504)
    body = await _client.get(f"{_PREFIX}floor:{session_id}")
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="application/json")


async def _unless_gone(request: Request, work: Awaitable[None]) -> bool:
    """Run `work` unless the client disconnects first (then cancel it); True when done."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (task, gone):
            future.cancel()
    return task.done() and not task.cancelled()


async def _disconnected(request: Request) -> None:
    message: dict[str, Any] = {}
    while message.get("type") != "http.disconnect":
        message = dict(await request.receive())


@app.get("/v1/pool")
async def pool_state() -> dict[str, int]:
    return {"busy": pool().busy, "waiting": pool().waiting, "size": POOL_SIZE}


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
