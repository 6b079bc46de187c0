"""Bounded memory, embedded mode: 50,000 shoppers come and go, and the memory goes with them.

`shopper serve` (memory:// stream and cache) runs in a process of its own with TTLs of a
few seconds. After a warm-up its RSS is the start; events of 50,000 shoppers follow, and
once every TTL and the stream's retention have passed (plus a sweep) the RSS must be back
within 20% of the start; then a second wave of 50,000, with the same bound after it. The
figures are printed (`pytest -s` shows them); `BOUNDED_MEMORY_WAVES=4` runs four waves.

The server runs as `shopper serve` starts by default: on jemalloc, where the system has it
(`shopper.allocator`; `make test` installs it). CPython's own small-object allocator keeps a 1 MiB
arena while a single object in it lives, so after a burst a few objects born in it keep
part of the freed memory from the system (+16%, +20%, +30%, +34% after four waves in a
row, as each wave's objects keep more). To measure it, or glibc's malloc, instead:
`BOUNDED_MEMORY_ALLOCATOR=pymalloc` or `=malloc` (docs/memory.md has the figures).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shopper.allocator import allocator_env
from tests.helpers import serving

SHOPPERS = 50_000
WAVES = int(os.environ.get("BOUNDED_MEMORY_WAVES", "2"))  # of SHOPPERS each
WARM_UP_SHOPPERS = 10_000
TTL_S = 3.0  # sessions, lists, applied event ids
RETENTION_S = 20.0  # the embedded stream's: longer than the processor takes (a few s)
ADMIN = "bounded-memory-admin-token"
APPLY_TIMEOUT_S = 90.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], http: httpx.Client, log: Path) -> None:
        self.proc = proc
        self.http = http
        self.log = log

    def allocator(self) -> str:
        """What the server logged of its memory allocator."""
        lines = self.log.read_text().splitlines()
        return next(
            (line.split("memory allocator: ")[1] for line in lines if "memory allocator: " in line),
            "not logged",
        )

    def rss(self) -> float:
        assert self.proc.poll() is None, self.log.read_text()[-4000:]
        return rss_mb(self.proc.pid)

    def post(self, events: list[dict[str, Any]]) -> None:
        response = self.http.post("/v1/events", json=events)
        assert response.status_code == 202, response.text

    def post_shoppers(self, tag: str, count: int) -> None:
        """One view each for `count` shoppers, 1,000 events a request."""
        ts = datetime.now(UTC).isoformat()
        for start in range(0, count, 1000):
            self.post(
                [
                    {
                        "event_id": f"{tag}{n}",
                        "type": "view",
                        "ts": ts,
                        "item_id": f"i{n % 200}",
                        "user_id": f"{tag}{n}",
                    }
                    for n in range(start, min(start + 1000, count))
                ]
            )

    def rss_once_expired(self, applied: int) -> float:
        """RSS once `applied` events in all are applied and what they left has expired:
        every record past the stream's retention (counted from now: the last was posted
        just before), every entry past its TTL, then a sweep and its trim."""
        posted_at = time.monotonic()
        self.wait_applied(applied)
        time.sleep(max(posted_at + RETENTION_S - time.monotonic(), TTL_S) + 3)
        return self.rss()

    def wait_applied(self, count: int) -> None:
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        while (applied := self.http.get("/v1/stats").json()["applied"]) < count:
            assert time.monotonic() < deadline, f"{applied} of {count} events applied"
            time.sleep(0.25)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {
        **allocator_env(os.environ.get("BOUNDED_MEMORY_ALLOCATOR", "auto"), os.environ),
        "OPENBLAS_NUM_THREADS": "1",
        "SHOPPER_DATA_DIR": str(tmp_path),
        "SHOPPER_ADMIN_TOKEN": ADMIN,
        "SHOPPER_SESSION_TTL_S": str(TTL_S),
        "SHOPPER_FRESH_TTL_S": str(TTL_S / 2),
        "SHOPPER_LKG_TTL_S": str(TTL_S),
        "SHOPPER_DEDUP_TTL_S": str(TTL_S),
        "SHOPPER_MEMORY_STREAM_RETENTION_S": str(RETENTION_S),
    }
    log = tmp_path / "server.log"
    with serving(env, log, headers={"authorization": f"Bearer {ADMIN}"}) as (proc, http):
        yield Server(proc, http, log)


def test_rss_is_back_near_the_start_once_50000_shoppers_expire(server: Server) -> None:
    items = [{"item_id": f"i{n}", "title": f"Item {n}", "stock": 10} for n in range(200)]
    assert server.http.put("/v1/catalog/items", json=items).status_code == 202
    # The warm-up brings the process to its working state (threads, allocator arenas,
    # popular lists); the start is measured once it has expired, as the end is.
    server.post_shoppers("warm", WARM_UP_SHOPPERS)
    start = server.rss_once_expired(WARM_UP_SHOPPERS)
    print(f"\nallocator: {server.allocator()}")
    applied = WARM_UP_SHOPPERS
    # Waves in a row: what one leaves must not be added to by the next (flat, not creeping
    # up wave after wave).
    ends = []
    for wave in range(1, WAVES + 1):
        server.post_shoppers(f"w{wave}-", SHOPPERS)
        peak = server.rss()
        applied += SHOPPERS
        ends.append(server.rss_once_expired(applied))
        print(
            f"\nRSS: start {start:.1f} MB; wave {wave}: after {SHOPPERS} shoppers {peak:.1f} MB, "
            f"after their TTLs {ends[-1]:.1f} MB ({100 * (ends[-1] / start - 1):+.1f}%)",
        )
        assert peak > start * 1.2, "the workload did not grow the process: it proves nothing"
    over = [f"wave {n}: {end:.1f} MB" for n, end in enumerate(ends, 1) if end > start * 1.2]
    assert not over, (
        f"RSS not within 20% of the start ({start:.1f} MB): {', '.join(over)}; "
        f"allocator: {server.allocator()}"
    )
