"""The operator's dashboard (`/dashboard`): a static page over `GET /v1/dashboard/series`,
and the timer of page reads that feeds its latency and source charts and the page metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopper.services.history import History
from shopper.services.metrics import RECOMMENDATIONS_ROUTE, SIMILAR_ROUTE, Metrics
from shopper.services.page_log import PageLog

STATIC = Path(__file__).parent / "static" / "dashboard"
PAGE_PATH = RECOMMENDATIONS_ROUTE
SOURCE_FIELD = b'"source":"'
VARIANT_FIELD = b'"variant":"'


def add_dashboard(app: FastAPI, history: History, dependencies: Sequence[Any] = ()) -> None:
    """`/dashboard`, its assets under `/assets/dashboard`, and the series it plots (behind
    `dependencies`: the read key's check; the page and its assets hold no data, and the
    page sends the key of its URL's `#key=` fragment)."""
    router = APIRouter()

    @router.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/v1/dashboard/series", dependencies=list(dependencies))
    def dashboard_series(since: float | None = None) -> dict[str, Any]:
        """This process's history for the dashboard: snapshots (`at`, epoch seconds) of
        `stats` (as GET /v1/stats), `experiments` (as GET /v1/experiments) and `pages`
        (page reads: count by source, p50/p99 ms over the last interval), taken every
        `interval_s`, oldest first; with `since`, only those taken after it."""
        return {"interval_s": history.interval_s, "samples": history.series(since)}

    app.include_router(router)
    app.mount("/assets/dashboard", StaticFiles(directory=STATIC), name="dashboard-assets")


class PageTimer:
    """ASGI middleware: times each page read (`GET /v1/recommendations`, and for the
    metrics `GET /v1/items/{item_id}/similar`) inside shopper, to the start of the response
    as `Server-Timing` does, and notes the `source` and `variant` of the list served, read
    off the response body's bytes, so the routes themselves stay as they are. One timing
    feeds the dashboard's page log (recommendations only) and the metrics."""

    def __init__(self, app: ASGIApp, pages: PageLog | None, metrics: Metrics | None) -> None:
        self.app = app
        self.pages = pages
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = page_route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seconds = 0.0
        status = 0
        body: bytes | None = None

        async def watched_send(message: Message) -> None:
            nonlocal seconds, status, body
            if message["type"] == "http.response.start":
                seconds = time.perf_counter() - started
                status = message["status"]
            elif message["type"] == "http.response.body" and body is None:
                body = message.get("body", b"")
            await send(message)

        await self.app(scope, receive, watched_send)
        source = source_of(body or b"") if status == 200 else None
        if self.pages is not None and route == PAGE_PATH:
            self.pages.record(seconds * 1000, (source or "unknown") if status == 200 else "error")
        if self.metrics is not None:
            variant = (field_of(body or b"", VARIANT_FIELD) or "") if source else ""
            self.metrics.page_read(route, seconds, source, variant)


def page_route(path: str) -> str | None:
    """The page route a request path is a read of, if any."""
    if path == PAGE_PATH:
        return PAGE_PATH
    if path.startswith("/v1/items/") and path.endswith("/similar"):
        return SIMILAR_ROUTE
    return None


def source_of(body: bytes) -> str | None:
    """The `source` of a recommendations body."""
    return field_of(body, SOURCE_FIELD)


def field_of(body: bytes, field: bytes) -> str | None:
    """A string field of a recommendations body (`field` is `b'"name":"'`), without
    parsing the JSON: inside a JSON string a quote is escaped, so the first `"name":"`
    is the field (an item id cannot fake it)."""
    start = body.find(field)
    if start < 0:
        return None
    start += len(field)
    end = body.find(b'"', start)
    return body[start:end].decode() if end > start else None
