"""Flag-routed experiments across real server processes: the configured 2% challenger
share over 10,000 shoppers, each shopper's variant the same on every request and in two
API processes, and a kill (`shopper experiment kill`) that stops the challenger being
served within 5 s, without a restart."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shopper.services.runtime import free_port

SHOPPERS = 10_000
SHARE = 0.02
START_TIMEOUT_S = 60.0
KILL_PICKUP_S = 5.0


@contextmanager
def server(data_dir: Path, flags: Path) -> Iterator[httpx.Client]:
    """`shopper serve` (embedded) in a process of its own, on the flag file `flags`."""
    port = free_port()
    env = {**os.environ, "SHOPPER_DATA_DIR": str(data_dir), "SHOPPER_FLAGS_FILE": str(flags)}
    command = [sys.executable, "-m", "shopper", "serve", "--role", "all", "--port", str(port)]
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (data_dir / "server.log").read_text()
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield http
    finally:
        http.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopper", "experiment", *args],
        capture_output=True,
        text=True,
        check=True,
    )


def variant_of(http: httpx.Client, shopper: str) -> str:
    response = http.get("/v1/recommendations", params={"session_id": shopper})
    assert response.status_code == 200
    variant: str = response.json()["variant"]
    return variant


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    cli("set", "--flags", str(path), "--variant", "champion=promoted:98",
        "--variant", "challenger=baseline:2")  # fmt: skip
    return path


def test_two_percent_sticky_across_requests_and_processes_and_a_kill_within_5_s(
    tmp_path: Path, flags: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with server(tmp_path / "a", flags) as a, server(tmp_path / "b", flags) as b:
        shoppers = [f"visit-{n}" for n in range(SHOPPERS)]
        first = {s: variant_of(a, s) for s in shoppers}
        challengers = [s for s, v in first.items() if v == "challenger"]

        # The observed share is inside the 99.9% binomial interval of the configured 2%.
        z = 3.2905  # two-sided 99.9%
        half = z * math.sqrt(SHARE * (1 - SHARE) / SHOPPERS)
        assert SHARE - half <= len(challengers) / SHOPPERS <= SHARE + half, len(challengers)
        assert set(first.values()) == {"champion", "challenger"}

        # Sticky: again on the same process, and on another process.
        sample = shoppers[:1000] + challengers
        assert all(variant_of(a, s) == first[s] for s in sample)
        assert all(variant_of(b, s) == first[s] for s in sample)

        cli("kill", "challenger", "--flags", str(flags), "--reason", "test")
        killed_at = time.monotonic()
        while any(variant_of(http, s) == "challenger" for http in (a, b) for s in challengers):
            assert time.monotonic() - killed_at < KILL_PICKUP_S, "still served after 5 s"
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        print(f"kill picked up by both servers in {took:.2f} s")
