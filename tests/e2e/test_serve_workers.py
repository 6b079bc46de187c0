"""`shopper serve --role api --workers N`: N uvicorn worker processes on the Redis cache,
each answering pages from the lists the processor wrote (one worker per core is the
production setting the page benchmark reports beside one worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
from shopper.adapters.system_clock import SystemClock
from shopper.domain.recommendation import RecommendationList, ScoredItem, Source
from shopper.ports.cache import ListKey
from shopper.services.runtime import free_port

pytestmark = pytest.mark.redis

START_TIMEOUT_S = 60.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_two_api_workers_serve_the_lists_written_to_redis(redis_url: str, tmp_path: Path) -> None:
    prefix = f"workers-{uuid.uuid4().hex[:6]}:"
    client = redis_from_url(redis_url)
    cache = RedisRecommendationCache(client, SystemClock(), 900, 3600, prefix=prefix)
    items = tuple(ScoredItem(f"i{n}", 1.0 - n / 10) for n in range(5))
    mine = RecommendationList(items, "champion", Source.PERSONALIZED, time.time(), "l1")
    cache.write_lists([(ListKey(f"s:shopper-{n}", "champion"), mine) for n in range(20)])
    client.close()

    port = free_port()
    env = {
        **os.environ,
        "SHOPPER_DATA_DIR": str(tmp_path),
        "SHOPPER_CACHE_URL": redis_url,
        "SHOPPER_REDIS_KEY_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "shopper", "serve", "--role", "api", "--workers", "2"]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(children(proc.pid)) < 2 or not _healthy(http):
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        for n in range(20):
            body = http.get("/v1/recommendations", params={"session_id": f"shopper-{n}"}).json()
            assert body["source"] == "personalized"
            assert [i["item_id"] for i in body["items"]] == [f"i{rank}" for rank in range(5)]
        # The workers take the keys the parent generated into the data folder (passed in
        # clear: a settings dump would mask them).
        keys = tomllib.loads((tmp_path / "keys.toml").read_text())
        search = {"type": "search", "session_id": "s", "query": "q"}
        for n in range(8):
            event = {**search, "event_id": f"k{n}", "ts": datetime.now(UTC).isoformat()}
            auth = {"authorization": f"Bearer {keys['ingest_key']}"}
            assert http.post("/v1/events", json=event, headers=auth).status_code == 202
            assert http.post("/v1/events", json=event).status_code == 401
    finally:
        http.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_workers_need_the_api_role(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shopper", "serve", "--workers", "2", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2 needs --role api" in done.stderr
    assert "Traceback" not in done.stderr


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
