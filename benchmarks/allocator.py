"""What jemalloc costs a page in the embedded mode against CPython's pymalloc, side by
side: `shopper serve` runs itself on jemalloc where the system has it (shopper.allocator),
which gives memory freed by TTLs back to the system (docs/memory.md).

Two API servers with the in-memory cache, each filled with the same 5,000 shoppers' 50-item
lists (`benchmarks.serve_filled memory://`), one on jemalloc (as `serve` starts itself) and
one with `PYTHONMALLOC=pymalloc`, pinned to core 0 with the load generator on core 1; closed
loop at 1 and 8 connections, the servers alternating who goes first, ratios (jemalloc over
pymalloc) taken within each repeat. The processor's side of it is `benchmarks.processor`'s
`embedded_over_embedded_pymalloc`.

`python -m benchmarks.allocator [--quick]` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from benchmarks import page_servers as servers
from benchmarks.http_load import Timing, closed_loop
from benchmarks.page_load import Summary, alternate, compare
from benchmarks.page_servers import CLIENT_CORE, SERVER_CORE, Server
from shopper.allocator import JEMALLOC_CONF, allocator_env
from shopper.services.runtime import free_port

SHOPPERS = 5000
LEVELS = (1, 8)
ALLOCATORS = ("pymalloc", "jemalloc")
TIMING = Timing(warm_up_s=2.0, measure_s=8.0, timeout_s=10.0)
QUICK_TIMING = Timing(warm_up_s=0.5, measure_s=2.0, timeout_s=10.0)


def _server(allocator: str) -> Server:
    port = free_port()
    args = ["-m", "benchmarks.serve_filled", "memory://", str(port), str(SHOPPERS)]
    return Server(args, allocator_env(allocator, {}), port, SERVER_CORE)


def _requests() -> list[bytes]:
    rng = random.Random(7)
    return [
        (
            f"GET /v1/recommendations?user_id=u{rng.randrange(SHOPPERS)}&k=10&country=gb"
            "&device=mobile HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        ).encode()
        for _ in range(SHOPPERS)
    ]


def run(quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    timing = QUICK_TIMING if quick else TIMING
    requests = _requests()
    levels: dict[str, Any] = {}
    started = (_server(a) for a in ALLOCATORS)
    with servers.pinned(CLIENT_CORE) as pinned, servers.running(*started) as urls:
        named = dict(zip(ALLOCATORS, urls, strict=True))
        for n in LEVELS:

            def measure(url: str, _: int, n: int = n) -> Summary:
                return closed_loop(url, requests, n, timing).summary()

            levels[str(n)] = compare(alternate(named, measure, repeats), ALLOCATORS)
    return {
        "levels": levels,
        "conditions": {
            "servers": "benchmarks.serve_filled memory:// (API only, the in-memory cache "
            f"filled with {SHOPPERS} shoppers' lists), one uvicorn worker each, "
            "PYTHONMALLOC=pymalloc and jemalloc (LD_PRELOAD, PYTHONMALLOC=malloc, "
            f"MALLOC_CONF={JEMALLOC_CONF})",
            "pinned": pinned,
            "where": f"servers on core {SERVER_CORE}, the load generator on core {CLIENT_CORE}",
            "load": "closed loop, keep-alive connections",
            "warm_up_s": timing.warm_up_s,
            "measure_s": timing.measure_s,
            "repeats": repeats,
            "ratio": "jemalloc over pymalloc, within each repeat",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
