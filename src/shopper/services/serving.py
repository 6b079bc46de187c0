"""The read side of the API: one cache round trip, stock filtering, fallbacks. No models."""

from __future__ import annotations

from dataclasses import dataclass

from shopper.domain.event import subject_key
from shopper.domain.recommendation import (
    DEFAULT_VARIANT,
    RecommendationList,
    Source,
    choose_list,
)
from shopper.domain.segment import popularity_segments
from shopper.ports.cache import ListKey, RecommendationCache
from shopper.ports.clock import Clock


@dataclass(frozen=True, slots=True)
class PageRequest:
    user_id: str | None = None
    session_id: str | None = None
    k: int = 10
    context_item: str | None = None
    country: str | None = None
    device: str | None = None


class RecommendationReader:
    def __init__(self, cache: RecommendationCache, clock: Clock) -> None:
        self._cache = cache
        self._clock = clock

    def recommend(self, request: PageRequest) -> RecommendationList:
        """Always answers: an unknown shopper on an empty system gets an empty popular list."""
        subject = subject_key(request.user_id, request.session_id)
        key = ListKey(subject, DEFAULT_VARIANT) if subject else None
        segments = popularity_segments(request.country, request.device)
        page = self._cache.read_page(key, segments)
        exclude = [request.context_item] if request.context_item else []
        chosen = choose_list(page, request.k, exclude)
        if chosen is None:
            return RecommendationList((), DEFAULT_VARIANT, Source.POPULAR, self._clock.now(), "")
        return chosen
