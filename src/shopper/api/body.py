"""Request bodies: a size limit checked before a byte is read, and big bodies parsed off
the event loop, so a large or endless body costs neither memory nor page reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopper.errors import ShopperError

# A body up to this size is parsed on the event loop (well under a millisecond); a bigger
# one in a worker thread, where the loop takes the GIL back every switch interval.
OFF_LOOP_BYTES = 64 * 1024

P = ParamSpec("P")
R = TypeVar("R")


class BodyTooLarge(ShopperError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is over the limit of {limit} bytes (max_body_bytes); "
            "split it into smaller batches"
        )


class BodyLimit:
    """Refuses a body over `max_bytes` with 413: at once when its Content-Length says so,
    else (a chunked body) as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        await self.app(scope, receive if declared is not None else self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted


def too_large(limit: int) -> JSONResponse:
    # The connection is closed after the answer: else the server would read and discard
    # the rest of the body to keep the connection for a next request.
    detail = {"detail": str(BodyTooLarge(limit))}
    return JSONResponse(detail, status_code=413, headers={"connection": "close"})


def add_body_limit(app: FastAPI, max_bytes: int) -> None:
    """The limit for every route of `app`, those FastAPI parses included."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    async def refuse(_: Request, exc: Exception) -> JSONResponse:
        return too_large(max_bytes)

    app.add_exception_handler(BodyTooLarge, refuse)


class JsonBody(NamedTuple):
    value: Any
    size: int  # bytes: whether handling it belongs off the loop (`off_loop_if_large`)


async def read_json(request: Request) -> JsonBody | JSONResponse:
    """The body's JSON value, or a 400 with the reason (413 comes from `BodyLimit`)."""
    raw = await request.body()
    try:
        if len(raw) > OFF_LOOP_BYTES:
            return JsonBody(await anyio.to_thread.run_sync(json.loads, raw), len(raw))
        return JsonBody(json.loads(raw), len(raw))
    except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4,300 digits
        return JSONResponse({"detail": f"body is not valid JSON: {exc}"}, status_code=400)
    except RecursionError:
        detail = "body JSON is nested too deeply to read"
        return JSONResponse({"detail": detail}, status_code=400)


async def off_loop_if_large(
    body: JsonBody, handle: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """`handle(...)` (validating and publishing what the body holds) in a worker thread when
    the body is big, so page reads do not wait behind it; inline when it is small."""
    if body.size <= OFF_LOOP_BYTES:
        return handle(*args, **kwargs)
    return await anyio.to_thread.run_sync(lambda: handle(*args, **kwargs))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it; counted all the same
    return None
