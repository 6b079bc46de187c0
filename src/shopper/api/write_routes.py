"""The write routes: events (`POST /v1/events`) and catalog items (`PUT /v1/catalog/items`).

Each batch is validated per event: the bad ones are listed with their reasons and the good
ones beside them accepted all the same. Behaviour events take the ingest key, catalog
events the admin token (api/auth.py), and each admin write is audited. A batch that
changes the catalog is answered once this process's pages show its stock changes.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run
time.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from shopper.api.auth import Guard, KeyKind, audit_write, ingest_forbidden
from shopper.api.body import JsonBody, off_loop_if_large, read_json
from shopper.api.readiness import write_unavailable
from shopper.api.schemas import ErrorOut, IngestOut, RejectedEventOut
from shopper.codec import EVENT, ItemIn
from shopper.domain.event import CATALOG_TYPES
from shopper.services.ingest import BatchTooLarge, EventIngest, IngestResult
from shopper.services.serving import RecommendationReader


def write_router(ingest: EventIngest, reader: RecommendationReader, guard: Guard) -> APIRouter:
    """The write routes, each behind the key its events need."""
    router = APIRouter()
    any_writer = Depends(guard.dependency(guard.writer))
    admin_only = Depends(guard.dependency(guard.admin))

    @router.post(
        "/v1/events",
        status_code=202,
        response_model=IngestOut,
        responses={
            400: {"model": ErrorOut, "description": "Body is not JSON"},
            413: {"model": ErrorOut, "description": "Batch or body over the limit"},
            422: {"model": IngestOut, "description": "Some events rejected; the rest accepted"},
            429: {"description": SPOOL_FULL_DOC},
        },
        openapi_extra=_body_schema("EventIn", "One event, or a list of events", ingest.max_batch),
    )
    async def post_events(request: Request, kind: KeyKind = any_writer) -> Any:
        """Accept one event or a batch. Each bad event is listed with its reasons;
        the good events beside it are accepted all the same. Behaviour events need the
        ingest key, catalog events (`item_upsert`, `stock_change`, `price_change`) the
        admin token."""
        body = await read_json(request)
        if isinstance(body, JSONResponse):
            return body
        events = body.value if isinstance(body.value, list) else [body.value]
        if kind is KeyKind.INGEST and (refused := ingest_forbidden(events)) is not None:
            return refused
        return await accept(body, events, request, kind)

    @router.put(
        "/v1/catalog/items",
        status_code=202,
        response_model=IngestOut,
        responses={
            400: {"model": ErrorOut},
            413: {"model": ErrorOut},
            422: {"model": IngestOut},
            429: {"description": SPOOL_FULL_DOC},
        },
        openapi_extra=_body_schema("ItemIn", "Items to insert or update", ingest.max_batch),
    )
    async def put_items(request: Request, kind: KeyKind = admin_only) -> Any:
        """Bulk upsert catalog items (each becomes an `item_upsert` event). Needs the
        admin token."""
        body = await read_json(request)
        if isinstance(body, JSONResponse):
            return body
        items = body.value if isinstance(body.value, list) else [body.value]
        now = ingest.clock.now()
        events = [_upsert_event(item, now) for item in items]
        return await accept(body, events, request, kind)

    async def accept(body: JsonBody, events: list[Any], request: Request, kind: KeyKind) -> Any:
        """Ingest a batch. One that changes the catalog is answered once this process's pages
        show its stock changes (at most STOCK_SHOWN_WAIT_S): a shop that marks an item sold
        out and then reads a page through the same API never sees it there."""
        response = await off_loop_if_large(body, _ingest_response, ingest, events, request, kind)
        if response.status_code in (202, 422) and _changes_catalog(events):
            await reader.shows_changes(STOCK_SHOWN_WAIT_S)
        return response

    return router


SPOOL_FULL_DOC = (
    "The local spool of events waiting for the stream's broker is full (the broker is down "
    "or slow). `detail` says why; the events counted in `accepted` were taken, the ids in "
    "`not_accepted` were not: send those again after `Retry-After` seconds. Invalid events "
    "are listed in `rejected` as with 422."
)


# How long a catalog write's answer waits for this process's pages to show its stock changes
# (the near cache follows Redis's change stream, usually within milliseconds).
STOCK_SHOWN_WAIT_S = 0.25


def _ingest_response(
    ingest: EventIngest, events: list[Any], request: Request, kind: KeyKind
) -> Any:
    response, accepted = _ingested(ingest, events)
    if kind is KeyKind.ADMIN:
        audit_write(request, kind, events, response.status_code, accepted)
    return response


def _ingested(ingest: EventIngest, events: list[Any]) -> tuple[JSONResponse, int]:
    """The response to a batch, and how many of its events were accepted."""
    try:
        result: IngestResult = ingest.ingest(events)
    except BatchTooLarge as exc:
        return JSONResponse({"detail": str(exc)}, status_code=413), 0
    except Exception as exc:  # a dependency down mid-write, say the live stock set (Redis)
        return write_unavailable(exc), 0
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
        response = JSONResponse(body, status_code=429, headers={"Retry-After": "1"})
    else:
        response = JSONResponse(out.model_dump(), status_code=422 if result.rejected else 202)
    return response, result.accepted


def _changes_catalog(events: list[Any]) -> bool:
    return any(
        isinstance(e, dict) and isinstance(kind := e.get("type"), str) and kind in CATALOG_TYPES
        for e in events
    )


def _upsert_event(item: Any, now: float) -> Any:
    if not isinstance(item, dict):
        return item  # rejected by validation with a clear reason
    # Unique per request: the processor drops repeated event ids, and a later upsert of the
    # same item must not be mistaken for a redelivery of the first. Upserts are idempotent.
    # The event happens now: the catalog changed when the shop said so. The id leaves the
    # item's id out (the event carries the item): it fits whatever the item id's length.
    event_id = f"upsert:{uuid.uuid4().hex}"
    return {
        "event_id": event_id,
        "type": "item_upsert",
        "ts": datetime.fromtimestamp(now, UTC).isoformat(),
        "item": item,
    }


def _body_schema(name: str, description: str, max_batch: int) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    batch = {"type": "array", "items": ref, "maxItems": max_batch}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"oneOf": [ref, batch]}}},
        }
    }


def add_body_models(app: FastAPI) -> None:
    """Request bodies are parsed by hand (to answer per event), so their schemas (`EventIn`,
    `ItemIn`) are added to the OpenAPI document here."""
    models: dict[str, TypeAdapter[Any]] = {"EventIn": EVENT, "ItemIn": TypeAdapter(ItemIn)}
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, model in models.items():
                schema = model.json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
        return app.openapi_schema or original()

    app.openapi = openapi  # type: ignore[method-assign]
