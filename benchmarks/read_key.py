"""What a read key costs the page's fast path: `page_route.keyed` alone (the request's
`Authorization` found among browser-like headers and compared with the two accepted
values), and a whole in-process page read (memory cache, no impression) with reads open
against one with a read key set. `python -m benchmarks.read_key`; prints one JSON object
of microseconds per call, the best of its rounds (the machine's noise only adds)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from shopper.api.page_route import keyed
from shopper.bootstrap import build_system
from shopper.config import load_config

READ_KEY = "read-key-of-the-benchmark-0123456789"
ADMIN_TOKEN = "admin-token-of-the-benchmark-012345"
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"python-httpx/0.28"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"authorization", f"Bearer {READ_KEY}".encode()),
]
QUERY = b"user_id=u1&session_id=s1&k=10&impression=false"
CALLS = 200_000
PAGES = 20_000
ROUNDS = 6


def keyed_us() -> float:
    scope = {"headers": HEADERS}
    accepted = (f"Bearer {READ_KEY}".encode(), f"Bearer {ADMIN_TOKEN}".encode())
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            keyed(scope, accepted)
        best = min(best, (time.perf_counter() - start) / CALLS)
    return best * 1e6


async def page_us(read_key: str | None) -> float:
    """One round of PAGES fast-path reads, after a warm-up."""
    settings: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "read_key": read_key}
    system = build_system(load_config({}, **settings))
    app = system.app()
    headers = HEADERS if read_key else HEADERS[:-1]
    scope = {
        "type": "http",
        "path": "/v1/recommendations",
        "method": "GET",
        "query_string": QUERY,
        "headers": headers,
    }
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    for _ in range(1000):
        await app(scope, receive, send)
    start = time.perf_counter()
    for _ in range(PAGES):
        await app(scope, receive, send)
    took = (time.perf_counter() - start) / PAGES
    system.close()
    assert set(sent) == {200}, set(sent)
    return took * 1e6


def main() -> None:
    best: dict[str, float] = {"open": float("inf"), "read_key": float("inf")}
    for _ in range(ROUNDS):  # interleaved: a busy moment weighs on both alike
        best["open"] = min(best["open"], asyncio.run(page_us(None)))
        best["read_key"] = min(best["read_key"], asyncio.run(page_us(READ_KEY)))
    out = {
        "keyed_us": round(keyed_us(), 3),
        "page_open_us": round(best["open"], 2),
        "page_read_key_us": round(best["read_key"], 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
