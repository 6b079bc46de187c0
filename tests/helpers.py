"""Small builders shared by the HTTP-level tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shopper.bootstrap import System
from shopper.services.runtime import free_port

# The keys of the `shopper serve` processes the tests start (SERVER_KEYS_ENV in their
# environment); in-process systems have keys of their own (`System.keys`, `keyed`).
TEST_ADMIN_TOKEN = "test-admin-token-0123456789"
TEST_INGEST_KEY = "test-ingest-key-0123456789"
SERVER_KEYS_ENV = {"SHOPPER_ADMIN_TOKEN": TEST_ADMIN_TOKEN, "SHOPPER_INGEST_KEY": TEST_INGEST_KEY}
SERVE_START_TIMEOUT_S = 60.0


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def keyed(system: System) -> dict[str, str]:
    """Headers with the system's admin token, which takes every route: what the shared
    test clients send. Tests of the keys themselves send other headers per request."""
    return bearer(system.keys.admin)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def view(event_id: str, item: str, **who: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "view", "ts": now_iso(), "item_id": item, **who}


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


@dataclass
class ShopHttp:
    """A shop frontend talking to a running system over HTTP."""

    system: System
    http: httpx.Client

    def post(self, *events: dict[str, Any]) -> httpx.Response:
        return self.http.post("/v1/events", json=list(events))

    def accept(self, *events: dict[str, Any]) -> None:
        """Post events that must all be accepted."""
        response = self.post(*events)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(events)

    def page(self, **params: Any) -> dict[str, Any]:
        response = self.http.get("/v1/recommendations", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def post_crowd(self) -> int:
        """A catalog (a-e, in stock), shoppers who viewed a then b, and more who viewed c
        then d (so c and d are more popular: b leads a list only as a's neighbour).
        Returns how many events that was."""
        items = [{"item_id": i, "title": i.upper(), "stock": 10} for i in "abcde"]
        assert self.http.put("/v1/catalog/items", json=items).status_code == 202
        events = []
        for n in range(3):
            events += [
                view(f"ab{n}-a", "a", user_id=f"o{n}"),
                view(f"ab{n}-b", "b", user_id=f"o{n}"),
            ]
        for n in range(5):
            events += [
                view(f"cd{n}-c", "c", user_id=f"p{n}"),
                view(f"cd{n}-d", "d", user_id=f"p{n}"),
            ]
        self.accept(*events)
        return len(items) + len(events)

    def applied(self) -> int:
        """Events the processors of this process have applied so far."""
        return sum(r.processor.stats.applied for r in self.system.runners)


@contextmanager
def serving(
    env: Mapping[str, str], log: Path, headers: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """`python -m shopper serve` (every role in one process) on a free port with `env`, its
    output to `log`: the process and a client of it, once `/healthz` answers; stopped after."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shopper", "serve", "--port", str(port)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=30, headers=dict(headers or {}))
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while not _healthy(http):
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield proc, http
    finally:
        http.close()
        proc.terminate()
        proc.wait(timeout=30)


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
