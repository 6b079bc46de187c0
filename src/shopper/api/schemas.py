"""Response bodies of the HTTP API (request bodies are the models in `shopper.codec`)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from shopper.domain.recommendation import RecommendationList


class ScoredItemOut(BaseModel):
    item_id: str
    score: float


class RecommendationsOut(BaseModel):
    items: list[ScoredItemOut]
    variant: str
    source: str
    generated_at: datetime
    list_id: str

    @classmethod
    def of(cls, ranked: RecommendationList, k: int) -> RecommendationsOut:
        return cls(
            items=[ScoredItemOut(item_id=s.item_id, score=s.score) for s in ranked.items[:k]],
            variant=ranked.variant,
            source=ranked.source.value,
            generated_at=datetime.fromtimestamp(ranked.generated_at, UTC),
            list_id=ranked.list_id,
        )


class RejectedEventOut(BaseModel):
    index: int
    event_id: str | None
    reasons: list[str]


class IngestOut(BaseModel):
    accepted: int
    rejected: list[RejectedEventOut] = []


class ErrorOut(BaseModel):
    detail: str


class HealthOut(BaseModel):
    status: str
    stream: str
    cache: str
