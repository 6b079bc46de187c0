"""The read routes: a shopper's list (`GET /v1/recommendations`), an item's similar items
and the running experiment's report. Each is open or keyed as the read setting says
(api/auth.py).

No `from __future__ import annotations` here: FastAPI reads the route signatures at run
time, and the `k` bound refers to a local of `read_router`.
"""

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.params import Depends
from fastapi.responses import Response

from shopper.api.page_route import Page
from shopper.api.schemas import ErrorOut, RecommendationsOut, recommendations_body
from shopper.services.serving import PageRequest, RecommendationReader


def read_router(
    page: Page,
    reader: RecommendationReader,
    readers: list[Depends],
    default_k: int,
    max_k: int,
    experiments: Callable[[float], dict[str, Any]] | None,
) -> APIRouter:
    """The read routes, each behind `readers` (the read key's check, when one is set).
    `page` answers the list as the page route's fast path does."""
    router = APIRouter()

    @router.get("/v1/recommendations", response_model=RecommendationsOut, dependencies=readers)
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
        body, served = await page(request)
        page.sent(request, served)  # (before the page is sent: this route is the slow path)
        return Response(body, media_type="application/json")

    @router.get(
        "/v1/items/{item_id:path}/similar",
        response_model=RecommendationsOut,
        responses={
            200: {"description": SIMILAR_DOC},
            404: {
                "model": ErrorOut,
                "description": "No such route: an item id with a line break cannot be part "
                "of this path (no catalog item has one: ids are refused with control "
                "characters)",
            },
        },
        dependencies=readers,
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

    @router.get("/v1/experiments", dependencies=readers)
    def get_experiments(
        max_age_s: Annotated[
            float, Query(ge=0, description="a report at most this old is answered as is")
        ] = 5.0,
    ) -> dict[str, Any]:
        """The running experiment: each variant's model and share of shoppers, and per
        variant sessions, click-through, add-to-cart and conversion rates and revenue per
        session with intervals, each challenger against the champion."""
        return experiments(max_age_s) if experiments else {"champion": None, "variants": []}

    return router


SIMILAR_DOC = (
    "The item's most similar items in stock, best first (its behavioural and content "
    "neighbours in the served model). An item with no similar list (unknown, or no model "
    "trained yet) or a cache outage gets an empty list, never an error."
)
