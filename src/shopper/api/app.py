"""The FastAPI application: the read routes (api/read_routes.py), the write routes
(api/write_routes.py) and the operators' routes, behind the page route's fast path. Routes
only read the cache or publish events: no models here.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run
time.
"""

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopper import __version__
from shopper.api.auth import Guard
from shopper.api.body import add_body_limit
from shopper.api.dashboard import PageTimer, add_dashboard
from shopper.api.docs import add_offline_docs
from shopper.api.openapi_doc import document_refusals
from shopper.api.page_route import Page, PageRoute
from shopper.api.read_routes import read_router
from shopper.api.readiness import Check, readiness_router
from shopper.api.schemas import HealthOut
from shopper.api.write_routes import add_body_models, write_router
from shopper.keys import ApiKeys, new_key
from shopper.services.history import History
from shopper.services.ingest import EventIngest
from shopper.services.metrics import Metrics
from shopper.services.page_log import PageLog
from shopper.services.serving import RecommendationReader


def create_app(
    ingest: EventIngest,
    reader: RecommendationReader,
    default_k: int = 10,
    max_k: int = 100,
    health: dict[str, str] | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
    experiments: Callable[[float], dict[str, Any]] | None = None,
    history: History | None = None,
    pages: PageLog | None = None,
    impressions: bool = True,
    metrics: Metrics | None = None,
    keys: ApiKeys | None = None,
    max_body_bytes: int = 1 << 20,
    readiness: Mapping[str, Check] | None = None,
) -> PageRoute:
    """The API: FastAPI (`.app`) behind the page route's fast path. `keys`: the API keys
    it takes (api/auth.py); None: random ones, so no write is open by accident."""
    guard = Guard(keys or ApiKeys(new_key(), new_key()))
    readers = [Depends(guard.dependency(guard.reader))]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await reader.close()  # the page path's connections, on the loop that made them

    app = FastAPI(
        title="shopper",
        lifespan=lifespan,
        docs_url=None,  # served offline by add_offline_docs
        redoc_url=None,
        version=__version__,
        description="Real-time recommendations: the page reads a precomputed list, never a model.",
    )
    health_info = health or {"stream": "memory", "cache": "memory"}

    app.include_router(write_router(ingest, reader, guard))
    page = Page(reader.recommend_async, ingest.record_impression if impressions else None)

    app.include_router(read_router(page, reader, readers, default_k, max_k, experiments))
    app.include_router(_ops_router(health_info, stats, metrics))
    app.include_router(readiness_router(readiness or {}))
    add_body_models(app)
    document_refusals(app, readers[0].dependency if guard.read_headers is None else None)
    add_offline_docs(app)
    if history is not None:
        add_dashboard(app, history, readers)
    add_body_limit(app, max_body_bytes)  # innermost: the timers count a refusal too
    if pages is not None or metrics is not None:  # inside ServerTiming: added first
        app.add_middleware(PageTimer, pages=pages, metrics=metrics)
    app.add_middleware(ServerTiming)
    # In front of the framework: the page read skips it (api/page_route.py).
    return PageRoute(app, page, default_k, max_k, pages, metrics, guard.read_headers)


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` to every response: the time spent inside shopper,
    apart from the network and the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.3f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


def create_ops_app(
    health: dict[str, str],
    stats: Callable[[], dict[str, Any]] | None = None,
    metrics: Metrics | None = None,
    readiness: Mapping[str, Check] | None = None,
) -> FastAPI:
    """What a processor-only process serves: health, counters and metrics, for probes and
    operators."""
    app = FastAPI(title="shopper processor", version=__version__, docs_url=None, redoc_url=None)
    app.include_router(_ops_router(health, stats, metrics))
    app.include_router(readiness_router(readiness or {}))
    add_offline_docs(app)
    return app


def _ops_router(
    health: dict[str, str],
    stats: Callable[[], dict[str, Any]] | None,
    metrics: Metrics | None = None,
) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/stats")
    def get_stats() -> dict[str, Any]:
        """Counters of the stream processors running in this process (empty in an
        API-only process): events applied, duplicates, dead letters, list freshness."""
        return stats() if stats else {}

    @router.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        return HealthOut(status="ok", **health)

    if metrics is not None:

        @router.get(
            "/metrics",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": METRICS_DOC}},
        )
        def get_metrics() -> Response:
            """Prometheus metrics of this process, or of every process sharing
            `PROMETHEUS_MULTIPROC_DIR` when it is set (README, "Monitoring")."""
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)

    return router


METRICS_DOC = (
    "The Prometheus text format: page read latency, lists served by source and variant, "
    "list freshness, lists written by tier, events applied by type, dead letters, "
    "duplicates, impressions, processor lag, spool state and the experiment per variant."
)
