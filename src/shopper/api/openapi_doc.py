"""The answers every route can give besides its own, added to the OpenAPI document so that
it states exactly what the server does (a generated client, and the schemathesis test in
tests/unit/test_api_fuzz.py, take it at its word)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from shopper.api.schemas import ErrorOut

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_REFUSALS = {
    "401": {"description": 'No API key, or an unknown one (README, "Keys")', "content": _ERROR},
    "403": {"description": "An API key of the wrong kind for this route", "content": _ERROR},
}
_TOO_LARGE = {"description": "Body over max_body_bytes", "content": _ERROR}


def document_refusals(app: FastAPI, open_read: Callable[..., Any] | None) -> None:
    """Each keyed route documents 401 and 403, each route taking a body 413. `open_read`:
    the read routes' key check while reads are open; those routes say a key is optional
    (an empty security requirement beside the bearer one)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        open_ops = _operations_depending_on(app, open_read) if open_read else set()
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                _complete(operation, (path, method) in open_ops)
        doc.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "ErrorOut", ErrorOut.model_json_schema()
        )
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], key_optional: bool) -> None:
    responses = operation.setdefault("responses", {})
    if "requestBody" in operation:
        responses.setdefault("413", _TOO_LARGE)
    if not operation.get("security"):
        return
    if key_optional:
        operation["security"] = [*operation["security"], {}]
    else:
        for status, answer in _REFUSALS.items():
            responses.setdefault(status, answer)


def _operations_depending_on(app: FastAPI, dependency: Callable[..., Any]) -> set[tuple[str, str]]:
    found = set()
    for route in _api_routes(app.routes):
        if any(d.dependency is dependency for d in route.dependencies):
            found |= {(route.path_format, m.lower()) for m in route.methods or ()}
    return found


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, those of included routers too (FastAPI keeps an included router
    whole, as `original_router`; shopper's routers have no prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(router.routes)
