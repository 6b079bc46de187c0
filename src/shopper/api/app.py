"""The FastAPI application. Routes only read the cache or publish events: no models here.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run
time, and the `k` bound refers to a local of `create_app`.
"""

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopper import __version__
from shopper.api.dashboard import PageTimer, add_dashboard
from shopper.api.docs import add_offline_docs
from shopper.api.page_route import PageRoute, page_function
from shopper.api.schemas import (
    ErrorOut,
    HealthOut,
    IngestOut,
    RecommendationsOut,
    RejectedEventOut,
    recommendations_body,
)
from shopper.codec import EventIn, ItemIn
from shopper.services.history import History
from shopper.services.ingest import BatchTooLarge, EventIngest, IngestResult
from shopper.services.metrics import Metrics
from shopper.services.page_log import PageLog
from shopper.services.serving import PageRequest, RecommendationReader


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
) -> PageRoute:
    """The API: FastAPI (`.app`) behind the page route's fast path."""

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

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=IngestOut,
        responses={
            400: {"model": ErrorOut, "description": "Body is not JSON"},
            413: {"model": ErrorOut, "description": "Batch over the limit"},
            422: {"model": IngestOut, "description": "Some events rejected; the rest accepted"},
            429: {"description": SPOOL_FULL_DOC},
        },
        openapi_extra=_body_schema(EventIn, "One event, or a list of events"),
    )
    async def post_events(request: Request) -> Any:
        """Accept one event or a batch. Each bad event is listed with its reasons;
        the good events beside it are accepted all the same."""
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        events = body if isinstance(body, list) else [body]
        return _ingest_response(ingest, events)

    @app.put(
        "/v1/catalog/items",
        status_code=202,
        response_model=IngestOut,
        responses={
            400: {"model": ErrorOut},
            413: {"model": ErrorOut},
            422: {"model": IngestOut},
            429: {"description": SPOOL_FULL_DOC},
        },
        openapi_extra=_body_schema(ItemIn, "Items to insert or update"),
    )
    async def put_items(request: Request) -> Any:
        """Bulk upsert catalog items (each becomes an `item_upsert` event)."""
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        items = body if isinstance(body, list) else [body]
        events = [_upsert_event(item) for item in items]
        return _ingest_response(ingest, events)

    page = page_function(reader.recommend_async, ingest.record_impression if impressions else None)

    @app.get("/v1/recommendations", response_model=RecommendationsOut)
    # async: the read is one in-memory lookup or one awaited Redis round trip.
    async def get_recommendations(
        user_id: str | None = None,
        session_id: str | None = None,
        k: Annotated[int | None, Query(ge=1, le=max_k)] = None,
        context_item: Annotated[
            str | None, Query(description="the product on the page; never recommended back")
        ] = None,
        country: str | None = None,
        device: str | None = None,
        impression: Annotated[
            bool,
            Query(
                description="false: the list is fetched but not shown (a prefetch, a "
                "monitoring probe), so no impression is recorded for it"
            ),
        ] = True,
    ) -> Any:
        """The shopper's precomputed list, filtered against live stock at read time.
        `source` tells `personalized`, `last_known_good` or `popular`."""
        # Well-formed requests are answered by PageRoute before reaching here, with the
        # same page function: this route documents the API and validates the rest.
        size = k or default_k
        request = PageRequest(user_id, session_id, size, context_item, country, device, impression)
        body, _ = await page(request)
        return Response(body, media_type="application/json")

    @app.get(
        "/v1/items/{item_id:path}/similar",
        response_model=RecommendationsOut,
        responses={200: {"description": SIMILAR_DOC}},
    )
    # async for the same reason as get_recommendations: one cache round trip.
    async def get_similar(
        item_id: str, k: Annotated[int | None, Query(ge=1, le=max_k)] = None
    ) -> Any:
        """Items similar to this one, for its product page (anonymous shoppers included):
        a list precomputed from the served model, filtered against live stock at read
        time. `source` is `similar`."""
        size = k or default_k
        body = recommendations_body(await reader.similar_async(item_id, size), size)
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/v1/experiments")
    def get_experiments(
        max_age_s: Annotated[
            float, Query(ge=0, description="a report at most this old is answered as is")
        ] = 5.0,
    ) -> dict[str, Any]:
        """The running experiment: each variant's model and share of shoppers, and per
        variant sessions, click-through, add-to-cart and conversion rates and revenue per
        session with intervals, each challenger against the champion."""
        return experiments(max_age_s) if experiments else {"champion": None, "variants": []}

    app.include_router(_ops_router(health_info, stats, metrics))
    _add_body_models(app, [EventIn, ItemIn])
    add_offline_docs(app)
    if history is not None:
        add_dashboard(app, history)
    if pages is not None or metrics is not None:  # inside ServerTiming: added first
        app.add_middleware(PageTimer, pages=pages, metrics=metrics)
    app.add_middleware(ServerTiming)
    # In front of the framework: the page read skips it (api/page_route.py).
    return PageRoute(app, page, default_k, max_k, pages, metrics)


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
) -> FastAPI:
    """What a processor-only process serves: health, counters and metrics, for probes and
    operators."""
    app = FastAPI(title="shopper processor", version=__version__, docs_url=None, redoc_url=None)
    app.include_router(_ops_router(health, stats, metrics))
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


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return JSONResponse({"detail": f"body is not valid JSON: {exc}"}, status_code=400)
    except RecursionError:
        detail = "body JSON is nested too deeply to read"
        return JSONResponse({"detail": detail}, status_code=400)


SIMILAR_DOC = (
    "The item's most similar items in stock, best first (its behavioural and content "
    "neighbours in the served model). An item with no similar list (unknown, or no model "
    "trained yet) or a cache outage gets an empty list, never an error."
)

METRICS_DOC = (
    "The Prometheus text format: page read latency, lists served by source and variant, "
    "list freshness, lists written by tier, events applied by type, dead letters, "
    "duplicates, impressions, processor lag, spool state and the experiment per variant."
)

SPOOL_FULL_DOC = (
    "The local spool of events waiting for the stream's broker is full (the broker is down "
    "or slow). `detail` says why; the events counted in `accepted` were taken, the ids in "
    "`not_accepted` were not: send those again after `Retry-After` seconds. Invalid events "
    "are listed in `rejected` as with 422."
)


def _ingest_response(ingest: EventIngest, events: list[Any]) -> Any:
    try:
        result: IngestResult = ingest.ingest(events)
    except BatchTooLarge as exc:
        return JSONResponse({"detail": str(exc)}, status_code=413)
    out = IngestOut(
        accepted=result.accepted,
        rejected=[
            RejectedEventOut(index=r.index, event_id=r.event_id, reasons=r.reasons)
            for r in result.rejected
        ],
    )
    if result.spool_full:
        body = {**out.model_dump(), "detail": result.spool_full}
        body["not_accepted"] = result.not_accepted
        return JSONResponse(body, status_code=429, headers={"Retry-After": "1"})
    if result.rejected:
        return JSONResponse(out.model_dump(), status_code=422)
    return JSONResponse(out.model_dump(), status_code=202)


def _upsert_event(item: Any) -> Any:
    if not isinstance(item, dict):
        return item  # rejected by validation with a clear reason
    # Unique per request: the processor drops repeated event ids, and a later upsert of the
    # same item must not be mistaken for a redelivery of the first. Upserts are idempotent.
    # The event happens now: the catalog changed when the shop said so.
    event_id = f"upsert:{item.get('item_id')}:{uuid.uuid4().hex}"
    return {
        "event_id": event_id,
        "type": "item_upsert",
        "ts": datetime.now(UTC).isoformat(),
        "item": item,
    }


def _body_schema(model: type[Any], description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": {"oneOf": [ref, {"type": "array", "items": ref}]}}
            },
        }
    }


def _add_body_models(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Request bodies are parsed by hand (to answer per event), so their schemas are
    added to the OpenAPI document here."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
        return app.openapi_schema or original()

    app.openapi = openapi  # type: ignore[method-assign]
