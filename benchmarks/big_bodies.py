"""Page reads while another client posts 1 MB bodies (1,000 valid events each) without a
pause: the page's latency with those bodies parsed and validated on the event loop
(`inline`, how the API took them before) and in a worker thread (`off-loop`, now), each
against the same server with nobody posting. The server is `shopper serve --role api`
(memory mode) in a process of its own, the poster and the page reader in two more.
`python -m benchmarks.big_bodies [--pages N]`; prints one JSON line per run."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from benchmarks.bench_keys import ADMIN, INGEST, SERVER_ENV

# Runs `shopper serve` with every body parsed inline (OFF_LOOP_BYTES past any body) or not.
LAUNCH = """
import sys
import shopper.api.body as body
if sys.argv[1] == "inline":
    body.OFF_LOOP_BYTES = 10**12
from shopper.cli import main
sys.argv = ["shopper", "serve", "--role", "api", "--port", sys.argv[2], "--data-dir", sys.argv[3]]
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def big_body() -> bytes:
    """About 1 MB (under max_body_bytes): 1,000 valid search events."""
    ts = "2026-12-06T20:00:00+00:00"
    events = [
        {
            "event_id": f"e{n}",
            "type": "search",
            "ts": ts,
            "user_id": f"u{n % 50}",
            "query": "q" * 480,
            "context": {"page": "p" * 430},
        }
        for n in range(1000)
    ]
    return json.dumps(events).encode()


def post_forever(url: str, stop: Any, statuses: Any) -> None:
    body = big_body()
    headers = {**INGEST, "content-type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        while not stop.is_set():
            statuses.append(client.post("/v1/events", content=body).status_code)


def read_pages(url: str, pages: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        for n in range(200 + pages):
            started = time.perf_counter()
            params = {"user_id": f"u{n % 50}", "impression": "false"}
            assert client.get("/v1/recommendations", params=params).status_code == 200
            if n >= 200:  # after a warm-up
                latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.002)
    return latencies


def run(mode: str, posting: bool, pages: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, mode, str(port), data_dir],
            env={**os.environ, **SERVER_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_healthy(url)
            with mp.Manager() as manager:
                stop, statuses = manager.Event(), manager.list()
                poster = mp.Process(target=post_forever, args=(url, stop, statuses))
                if posting:
                    poster.start()
                    time.sleep(1.0)
                latencies = read_pages(url, pages)
                if posting:
                    stop.set()
                    poster.join()
                posted = list(statuses)
        finally:
            server.terminate()
            server.wait()
    q = statistics.quantiles(latencies, n=100)
    return {
        "parse": mode,
        "posting": posting,
        "pages": len(latencies),
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(max(latencies), 2),
        "bodies_posted": len(posted),
        "post_statuses": sorted(set(posted)),
    }


def _wait_healthy(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=3000)
    args = parser.parse_args()
    for mode in ("inline", "off-loop"):
        for posting in (False, True):
            print(json.dumps(run(mode, posting, args.pages)), flush=True)


if __name__ == "__main__":
    main()
