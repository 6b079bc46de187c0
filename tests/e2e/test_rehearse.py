"""`shopper rehearse` against `shopper serve` on Kafka + Redis, both real processes.

The smoke profile ramps to its peak while four best sellers sell out and one item goes
viral; the report must show every page answered, freshness measured for the probe
shoppers, no sold-out item served after its stock event was accepted (though they were
on pages before), and the fallback share. Plus the CLI's answer to a dead target, and the
rehearsal's lean HTTP transport against a server that chunks and closes connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from shopper.rehearsal.transport import LeanTransport
from shopper.services.runtime import free_port
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S
from tests.helpers import SERVER_KEYS_ENV

START_TIMEOUT_S = 60.0
REHEARSE_TIMEOUT_S = 60.0


@pytest.fixture
def served(kafka_broker: str, redis_url: str, kafka_prefix: str, tmp_path: Path) -> Iterator[str]:
    """`shopper serve` (API and processor in one process) on Kafka and Redis: its URL."""
    port = free_port()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "SHOPPER_STREAM_URL": f"kafka://{kafka_broker}",
        "SHOPPER_CACHE_URL": redis_url,
        "SHOPPER_TOPIC_PREFIX": kafka_prefix,
        "SHOPPER_REDIS_KEY_PREFIX": kafka_prefix,
        "SHOPPER_DATA_DIR": str(tmp_path / "data"),
        "SHOPPER_GROUP_SESSION_TIMEOUT_S": str(TEST_SESSION_TIMEOUT_S),
        **SERVER_KEYS_ENV,
    }
    command = [sys.executable, "-m", "shopper", "serve", "--port", str(port)]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(proc, url, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"shopper serve did not start: {log.read_text()[-2000:]}")


def _shopper(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **SERVER_KEYS_ENV}
    return subprocess.run(
        [sys.executable, "-m", "shopper", *args],
        capture_output=True, text=True, env=env, timeout=REHEARSE_TIMEOUT_S,
    )  # fmt: skip


@pytest.mark.kafka
@pytest.mark.redis
def test_rehearse_smoke_against_serve_on_kafka_and_redis(
    served: str, redis_url: str, kafka_prefix: str
) -> None:
    done = _shopper(
        "rehearse", "--target", served, "--profile", "smoke", "--seed", "3", "--json",
        "--fail-on", "sold_out_served=0", "--fail-on", "page_errors=0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["target_health"] == {"status": "ok", "stream": "kafka", "cache": "redis"}
    assert report["checks"]["sold_out_served"]["ok"] and report["checks"]["page_errors"]["ok"]

    pages = report["pages"]
    assert pages["sent"] == pages["ok"] > 200  # smoke: about 370 planned
    assert pages["non_200"] == {} and pages["errors"] == {}
    assert pages["p99_ms"] < 5_000  # generous: a shared 2-core machine
    assert set(pages["by_phase"]) == {"warmup", "ramp", "hold", "cooldown"}
    events = report["events"]
    assert events["accepted"] == events["sent"] > 200 and events["rejected"] == 0

    fresh = report["freshness"]
    assert fresh["fresh"] >= 8 and fresh["stale"] == 0 and fresh["failed"] == 0
    assert 0 < fresh["p50_ms"] <= fresh["p99_ms"] < 5_000

    sold = report["sold_out"]
    assert sold["stock_events"] == 4 and sold["stock_events_failed"] == 0
    assert sold["served"] == 0 and sold["items"] == [] and sold["worst_delay_ms"] is None
    assert sold["seen_before"] > 0  # they were shown before: the check had something to catch

    assert sum(report["sources"].values()) == pages["ok"]
    assert report["sources"].get("personalized", 0) > 0
    assert 0 < report["fallback_share"] < 1

    # The run's lists went through Kafka into Redis, under the server's key prefix.
    client = redis.Redis.from_url(redis_url)
    try:
        assert any(True for _ in client.scan_iter(match=f"{kafka_prefix}*", count=1000))
    finally:
        client.close()


def test_rehearse_an_unreachable_target_exits_2_without_a_traceback() -> None:
    done = _shopper("rehearse", "--target", f"http://127.0.0.1:{free_port()}", "--json")
    assert done.returncode == 2
    assert "error: cannot reach shopper at http://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_rehearse_a_bad_profile_says_which_field(tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\n[traffic]\nhold_s = -1\n')
    done = _shopper("rehearse", "--profile", str(profile))
    assert done.returncode == 2
    assert "mine.toml is not a valid profile" in done.stderr
    assert "traffic.hold_s: Input should be greater than 0" in done.stderr


async def _odd_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers /chunked in chunks, /close with `connection: close`, anything else with a
    Content-Length body; hangs up after two requests on one connection."""
    for _ in range(2):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            break
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length")), 0,
        )  # fmt: skip
        body = await reader.readexactly(length)
        path = head.split(b" ")[1]
        if path == b"/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")  # fmt: skip
        elif path == b"/close":
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            break
        else:
            reply = b"echo:" + body
            writer.write(
                b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n%s" % (len(reply), reply)
            )
        await writer.drain()
    writer.close()


def test_the_lean_transport_reads_chunks_and_survives_closed_connections() -> None:
    async def exchange() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(_odd_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = []
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", transport=LeanTransport()
        ) as http:
            for path in ["/chunked", "/x", "/y", "/close", "/z"]:  # the server hangs up twice
                response = await http.post(path, content=b"hi")
                out.append((response.status_code, response.content))
        server.close()
        await server.wait_closed()
        return out

    assert asyncio.run(exchange()) == [
        (200, b"abcde"), (201, b"echo:hi"), (201, b"echo:hi"), (200, b"ok"), (201, b"echo:hi"),
    ]  # fmt: skip
