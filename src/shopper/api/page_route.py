"""The page read at the ASGI level: `GET /v1/recommendations` without the framework's
per-request work.

FastAPI's routing, dependency solving and two timing middlewares cost more per page than
the cache read itself. The page is the one route a shop calls on every render, so this
middleware answers it first: it parses the query as Starlette does, and when the request is
well formed it calls the same page function the FastAPI route calls, times it, sends the
bytes, and records the page for the dashboard and the metrics. Anything else, including a
malformed page request and, when a read key is set, one without it (one header look-up and
compare, `keyed`), goes on to FastAPI, whose route documents the API and answers
validation errors and missing keys as usual.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shopper.api.schemas import recommendations_body
from shopper.domain.recommendation import RecommendationList
from shopper.services.metrics import RECOMMENDATIONS_ROUTE, Metrics
from shopper.services.page_log import PageLog
from shopper.services.serving import PageRequest

MAX_K_DIGITS = 6
# `impression=` values, as FastAPI reads a bool (anything else: its validation error)
SHOWN = frozenset({"true", "1", "yes", "on", "True", "TRUE", "Yes", "YES", "On", "ON"})
NOT_SHOWN = frozenset({"false", "0", "no", "off", "False", "FALSE", "No", "NO", "Off", "OFF"})
CONTENT_TYPE = (b"content-type", b"application/json")

Recommend = Callable[[PageRequest], Awaitable[RecommendationList]]
Impression = Callable[[str | None, str | None, RecommendationList], None]


@dataclass(frozen=True, slots=True)
class Page:
    """The page: the shopper's list as response bytes (`await page(request)`), and its
    impression recorded once the page is sent (`sent`), so the shopper never waits for it."""

    recommend: Recommend
    impression: Impression | None

    async def __call__(self, request: PageRequest) -> tuple[bytes, RecommendationList]:
        served = await self.recommend(request)
        return orjson.dumps(recommendations_body(served, request.k)), served

    def sent(self, request: PageRequest, served: RecommendationList) -> None:
        if self.impression is not None and request.shown:
            self.impression(request.user_id, request.session_id, served)


def page_request(query: bytes, default_k: int, max_k: int) -> PageRequest | None:
    """The page request of a query string, parsed as Starlette parses it (the last of a
    repeated parameter wins); None when `k` is not a whole number in 1..max_k, for the
    framework to answer with its validation error."""
    params = query_params(query)
    k = params.get("k")
    if k is None:
        size = default_k
    elif k.isascii() and k.isdigit() and len(k) <= MAX_K_DIGITS and 1 <= int(k) <= max_k:
        size = int(k)
    else:
        return None
    shown = params.get("impression")
    if shown is not None and shown not in NOT_SHOWN and shown not in SHOWN:
        return None
    return PageRequest(
        params.get("user_id"),
        params.get("session_id"),
        size,
        params.get("context_item"),
        params.get("country"),
        params.get("device"),
        shown not in NOT_SHOWN,
    )


def query_params(query: bytes) -> dict[str, str]:
    """The query string's parameters as Starlette reads them (`parse_qsl` of its latin-1
    text, blank values kept, the last of a repeated name winning), with the common case,
    nothing escaped, done without it."""
    if b"%" in query or b"+" in query:
        return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    params: dict[str, str] = {}
    for part in query.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            params[name] = value
    return params


def keyed(scope: Scope, accepted: tuple[bytes, ...]) -> bool:
    """Whether the request's `Authorization` is one of `accepted` (whole header values),
    compared in constant time. A request without it goes on to FastAPI, which answers
    401 or 403 as for every other route."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            # `|`, not `or`: every accepted value is compared, whichever one matches.
            found = False
            for header in accepted:
                found |= hmac.compare_digest(value, header)
            return found
    return False


class PageRoute:
    """ASGI middleware answering well-formed page reads itself (module docstring)."""

    def __init__(
        self,
        app: FastAPI,
        page: Page,
        default_k: int,
        max_k: int,
        pages: PageLog | None = None,
        metrics: Metrics | None = None,
        read_headers: tuple[bytes, ...] | None = None,
    ) -> None:
        self.app = app
        self.page = page
        self.default_k = default_k
        self.max_k = max_k
        self.pages = pages
        self.metrics = metrics
        # The `Authorization` values a read may bring (api/auth.py); None: reads are open.
        self.read_headers = read_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != RECOMMENDATIONS_ROUTE
            or scope["method"] != "GET"
            or (request := page_request(scope["query_string"], self.default_k, self.max_k)) is None
            or (self.read_headers is not None and not keyed(scope, self.read_headers))
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body, served = await self.page(request)
        seconds = time.perf_counter() - started
        headers = [
            CONTENT_TYPE,
            (b"content-length", str(len(body)).encode()),
            (b"server-timing", f"app;dur={seconds * 1000:.3f}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.page.sent(request, served)
        if self.pages is not None:
            self.pages.record(seconds * 1000, served.source.value)
        if self.metrics is not None:
            self.metrics.page_read(
                RECOMMENDATIONS_ROUTE, seconds, served.source.value, served.variant
            )
