"""The page path degrades to an empty, well-formed answer when the cache is down."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.system_clock import ManualClock
from shopper.api.app import create_app
from shopper.domain.recommendation import PageRead, Source
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
    ingest = EventIngest(InMemoryEventLog(), cache, "events", "catalog", 10)
    app = create_app(ingest, RecommendationReader(cache, clock))
    with ApiServer(app) as url:
        response = httpx.get(f"{url}/v1/recommendations", params={"user_id": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["items"] == []
    assert body["source"] == "popular"
