"""`GET /readyz`: each dependency's check, 200 when all pass, else 503 with the reasons."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from shopper.api.readiness import Check, lag_check, readiness_router
from shopper.bootstrap import build_system
from shopper.config import load_config


class Client:
    """GET on an app of the route alone, in process."""

    def __init__(self, checks: dict[str, Check]) -> None:
        self.app = FastAPI()
        self.app.include_router(readiness_router(checks))

    def get(self, path: str) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.get(path)

        return asyncio.run(fetch())


def client(checks: dict[str, Check]) -> Client:
    return Client(checks)


def test_ready_when_every_check_passes() -> None:
    answer = client({"stream": lambda: None, "cache": lambda: None}).get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "ready": True,
        "checks": {"stream": {"ok": True}, "cache": {"ok": True}},
    }


def test_one_failing_check_is_a_503_with_its_reason() -> None:
    checks: dict[str, Check] = {"stream": lambda: "topics missing", "cache": lambda: None}
    answer = client(checks).get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["ready"] is False
    assert body["checks"]["stream"] == {"ok": False, "reason": "topics missing"}
    assert body["checks"]["cache"] == {"ok": True}


def test_a_check_that_raises_is_not_ready_and_still_answers() -> None:
    def broken() -> str | None:
        raise ConnectionError("refused")

    answer = client({"cache": broken}).get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["cache"] == {"ok": False, "reason": "ConnectionError: refused"}


def test_no_checks_is_ready() -> None:
    assert client({}).get("/readyz").status_code == 200


def test_the_processor_is_not_ready_past_its_lag_bound() -> None:
    lag = {("events", 0): 60, ("events", 1): 50}
    assert lag_check(lambda: lag, 200)() is None
    assert lag_check(lambda: lag, 100)() == "processor 110 records behind (more than 100)"


def test_a_write_a_dependency_cannot_take_is_a_503_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = build_system(load_config({}, data_dir=tmp_path))

    def down(_: object) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(system.cache, "set_stock", down)
    app = cast(FastAPI, system.app().app)
    stock = {
        "event_id": "e1",
        "type": "stock_change",
        "ts": datetime.now(UTC).isoformat(),
        "item_id": "i1",
        "quantity": 0,
    }

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            headers = {"Authorization": f"Bearer {system.keys.admin}"}
            return await http.post("/v1/events", json=[stock], headers=headers)

    try:
        answer = asyncio.run(post())
    finally:
        system.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "Connection refused" in answer.json()["detail"]
