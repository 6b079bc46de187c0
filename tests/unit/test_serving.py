"""The page path degrades to an empty, well-formed answer when the cache is down."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.system_clock import ManualClock
from shopper.api.app import create_app
from shopper.api.schemas import RecommendationsOut, recommendations_body
from shopper.domain.recommendation import PageRead, RecommendationList, ScoredItem, Source
from shopper.ports.cache import ListKey
from shopper.services.ingest import EventIngest
from shopper.services.runtime import ApiServer
from shopper.services.serving import PageRequest, RecommendationReader


class DownCache(InMemoryRecommendationCache):
    def read_page(self, key: ListKey | None, segments: Sequence[str]) -> PageRead:
        raise ConnectionError("connection refused")


def test_reader_answers_an_empty_popular_list_when_the_cache_is_down() -> None:
    clock = ManualClock()
    reader = RecommendationReader(DownCache(clock, 60, 600), clock)
    answer = reader.recommend(PageRequest(user_id="u1", k=5))
    assert answer.items == ()
    assert answer.source is Source.POPULAR


def test_recommendations_route_never_errors_when_the_cache_is_down() -> None:
    clock = ManualClock()
    cache = DownCache(clock, 60, 600)
    ingest = EventIngest(InMemoryEventLog(), cache, "events", "catalog", 10, clock)
    app = create_app(ingest, RecommendationReader(cache, clock))
    with ApiServer(app) as url:
        response = httpx.get(f"{url}/v1/recommendations", params={"user_id": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["items"] == []
    assert body["source"] == "popular"


def test_the_hand_built_body_is_what_the_documented_schema_says() -> None:
    """The page path builds its JSON by hand (no re-validation); the OpenAPI model
    `RecommendationsOut` must accept it field for field."""
    ranked = RecommendationList(
        (ScoredItem("a", 0.9000000095), ScoredItem("b", 0.5)),
        "champion",
        Source.LAST_KNOWN_GOOD,
        1_700_000_000.5,
        "list-1",
    )
    body = recommendations_body(ranked, k=1)
    parsed = RecommendationsOut.model_validate(body)
    assert parsed.model_dump(mode="json") == {
        **body,
        "generated_at": parsed.generated_at.isoformat().replace("+00:00", "Z"),
    }
    assert body["items"] == [{"item_id": "a", "score": 0.9}]  # k, and float32 noise rounded
    assert body["source"] == "last_known_good"
