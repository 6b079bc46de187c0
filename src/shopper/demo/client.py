"""The demo's shop frontend: posts events and reads recommendations the way a page does."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from shopper.domain.event import CATALOG_TYPES

CATALOG_TYPE_NAMES = frozenset(t.value for t in CATALOG_TYPES)


def _bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True, slots=True)
class Shopper:
    user_id: str | None
    session_id: str
    country: str | None = None
    device: str | None = None

    def ids(self) -> dict[str, Any]:
        out: dict[str, Any] = {"session_id": self.session_id}
        if self.user_id:
            out["user_id"] = self.user_id
        return out

    def context(self) -> dict[str, str]:
        return {k: v for k, v in (("country", self.country), ("device", self.device)) if v}


@dataclass
class ShopStats:
    events_posted: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    requests: int = 0
    serve_ms: list[float] = field(default_factory=list)  # page round trip over HTTP
    server_ms: list[float] = field(default_factory=list)  # inside shopper (Server-Timing)
    sources: Counter[str] = field(default_factory=Counter)
    sold_out_items_served: int = 0
    items_served: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    server_ms: float | None


class ShopClient:
    """HTTP client of the API that also knows the true stock, to catch sold-out items served.

    It speaks HTTP/1.1 over one keep-alive connection with the standard library: a page's
    own HTTP client is lean, and a heavy one would inflate the latency it measures.
    """

    def __init__(
        self, base_url: str, admin_token: str | None = None, ingest_key: str | None = None
    ) -> None:
        parsed = urlsplit(base_url)
        # The shop's back office holds the admin token (catalog, stock, price), its
        # frontend the ingest key (behaviour); pages send the admin token, which reads
        # take when a read key is set.
        self._admin = _bearer(admin_token)
        self._ingest = _bearer(ingest_key or admin_token)
        self._conn = http.client.HTTPConnection(
            parsed.hostname or "127.0.0.1", parsed.port, timeout=30
        )
        self.sold_out: set[str] = set()
        self.stats = ShopStats()

    def close(self) -> None:
        self._conn.close()

    def _call(self, method: str, path: str, payload: Any = None, catalog: bool = True) -> Reply:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"content-type": "application/json"} if body is not None else {}
        headers.update(self._admin if catalog else self._ingest)
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closed an idle keep-alive connection: reconnect once. Safe for
            # POSTs too: events are idempotent by event_id.
            self._conn.close()
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
        data = response.read()
        timing = response.getheader("server-timing") or ""
        server_ms = (
            float(timing.removeprefix("app;dur=")) if timing.startswith("app;dur=") else None
        )
        return Reply(response.status, json.loads(data) if data else None, server_ms)

    def upsert_items(self, items: list[dict[str, Any]], batch: int = 500) -> None:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            self._track_stock_of_items(chunk)
            self._count(self._call("PUT", "/v1/catalog/items", chunk), len(chunk))

    def post(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for event in events:
            self._track_stock(event)
        catalog = any(str(e.get("type")) in CATALOG_TYPE_NAMES for e in events)
        self._count(self._call("POST", "/v1/events", events, catalog), len(events))

    def recommend(
        self, shopper: Shopper, context_item: str | None = None, k: int = 10
    ) -> dict[str, Any]:
        params: dict[str, Any] = {**shopper.ids(), **shopper.context(), "k": k}
        if context_item:
            params["context_item"] = context_item
        started = time.perf_counter()
        reply = self._call("GET", "/v1/recommendations?" + urlencode(params))
        elapsed = (time.perf_counter() - started) * 1000
        self.stats.requests += 1
        if reply.status != 200:
            self.stats.errors += 1
            return {"items": [], "source": "error", "variant": "", "list_id": ""}
        self.stats.serve_ms.append(elapsed)
        if reply.server_ms is not None:
            self.stats.server_ms.append(reply.server_ms)
        body: dict[str, Any] = reply.body
        self.stats.sources[body["source"]] += 1
        shown = [i["item_id"] for i in body["items"]]
        self.stats.items_served += len(shown)
        self.stats.sold_out_items_served += sum(1 for i in shown if i in self.sold_out)
        return body

    def processor_stats(self) -> dict[str, Any]:
        return self.get_json("/v1/stats")

    def get_json(self, path: str) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", path).body
        return body

    def _count(self, reply: Reply, sent: int) -> None:
        self.stats.events_posted += sent
        if reply.status in (202, 422):
            body = reply.body
            self.stats.events_accepted += body["accepted"]
            self.stats.events_rejected += len(body.get("rejected", []))
        else:
            self.stats.errors += 1

    def _track_stock(self, event: dict[str, Any]) -> None:
        if event.get("type") == "stock_change":
            self._set_level(str(event["item_id"]), int(event["quantity"]))
        elif event.get("type") == "item_upsert":
            self._track_stock_of_items([event["item"]])

    def _track_stock_of_items(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if item.get("stock") is not None:
                self._set_level(str(item["item_id"]), int(item["stock"]))

    def _set_level(self, item_id: str, level: int) -> None:
        if level > 0:
            self.sold_out.discard(item_id)
        else:
            self.sold_out.add(item_id)
