"""The FastAPI application. Routes only read the cache or publish events: no models here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shopper import __version__
from shopper.api.schemas import (
    ErrorOut,
    HealthOut,
    IngestOut,
    RecommendationsOut,
    RejectedEventOut,
)
from shopper.codec import EventIn, ItemIn
from shopper.services.ingest import BatchTooLarge, EventIngest, IngestResult
from shopper.services.serving import PageRequest, RecommendationReader


def create_app(
    ingest: EventIngest,
    reader: RecommendationReader,
    default_k: int = 10,
    max_k: int = 100,
    health: dict[str, str] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="shopper",
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
        responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": IngestOut}},
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

    @app.get("/v1/recommendations", response_model=RecommendationsOut)
    def get_recommendations(
        user_id: str | None = None,
        session_id: str | None = None,
        k: Annotated[int | None, Query(ge=1, le=max_k)] = None,
        context_item: Annotated[
            str | None, Query(description="the product on the page; never recommended back")
        ] = None,
        country: str | None = None,
        device: str | None = None,
    ) -> RecommendationsOut:
        """The shopper's precomputed list, filtered against live stock at read time.
        `source` tells `personalized`, `last_known_good` or `popular`."""
        size = k or default_k
        request = PageRequest(user_id, session_id, size, context_item, country, device)
        return RecommendationsOut.of(reader.recommend(request), size)

    @app.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        return HealthOut(status="ok", **health_info)

    _add_body_models(app, [EventIn, ItemIn])
    return app


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return JSONResponse({"detail": f"body is not valid JSON: {exc}"}, status_code=400)


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
    if result.rejected:
        return JSONResponse(out.model_dump(), status_code=422)
    return JSONResponse(out.model_dump(), status_code=202)


def _upsert_event(item: Any) -> Any:
    if not isinstance(item, dict):
        return item  # rejected by validation with a clear reason
    ts = item.get("created_at") or item.get("updated_at")
    event = {"event_id": f"upsert:{item.get('item_id')}:{ts}", "type": "item_upsert", "item": item}
    event["ts"] = ts if ts else _now_iso()
    return event


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


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
