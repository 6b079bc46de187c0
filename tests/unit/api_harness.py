"""A real API server for HTTP tests: one per session, each test plugs in a fresh system."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.bootstrap import System
from shopper.ports.event_log import Record
from tests.unit.factories import drain

MAX_BATCH = 10
MAX_K = 20


@dataclass
class Api:
    """A fresh embedded system behind the server, and a client for it."""

    system: System
    http: httpx.Client

    def process(self) -> None:
        """Run a processor over everything accepted so far."""
        processor = self.system.processor()
        drain(self.system, processor)
        processor.close()

    def published(self) -> int:
        """Records on the event and catalog topics, apart from the impressions the API
        publishes for the lists it serves."""
        return sum(1 for r in self.records() if json.loads(r.value)["type"] != "impression")

    def impressions(self) -> list[dict[str, Any]]:
        """The impression events the API published, decoded."""
        found = [json.loads(r.value) for r in self.records()]
        return [e for e in found if e.get("type") == "impression"]

    def records(self) -> list[Record]:
        log = self.system.event_log
        assert isinstance(log, InMemoryEventLog)
        c = self.system.config
        consumer = log.subscribe([c.events_topic, c.catalog_topic], f"harness-{uuid.uuid4()}")
        out: list[Record] = []
        while batch := consumer.poll(10_000, 0):
            out += batch
        consumer.close()
        return out

    def recommend(self, **params: Any) -> dict[str, Any]:
        response = self.http.get("/v1/recommendations", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


class SwitchableApp:
    """Starting a server per test costs a fifth of a second; swapping its app costs nothing."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "no app plugged in"
        await self.target(scope, receive, send)


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]
