"""The page path's floor: the least a Python page server can do per request.

One route, `GET /v1/recommendations?session_id=&k=`, does one async Redis GET of the bytes
shopper answered for that shopper (key `<prefix>floor:<session_id>`, written by
`benchmarks.page_servers`) and returns them as they are. Same framework and server as shopper
(FastAPI on uvicorn), so what shopper costs above it is its own work per page.

`FLOOR_REDIS_URL=redis://... FLOOR_KEY_PREFIX=bench-x: python -m uvicorn
benchmarks.floor_app:app --port P`
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from fastapi import FastAPI, Response

# A standalone process started by the benchmark: its environment is its only config.
_PREFIX = os.environ.get("FLOOR_KEY_PREFIX", "bench-floor:")
_client = aioredis.Redis.from_url(os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))

app = FastAPI(title="page floor", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/v1/recommendations")
async def get_recommendations(session_id: str, k: int = 10) -> Response:
    """The stored response for this shopper (`k` is accepted and ignored: the stored body
    was fetched with the benchmark's one `k`); 404 when there is none."""
    body = await _client.get(f"{_PREFIX}floor:{session_id}")
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
