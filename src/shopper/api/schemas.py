"""Response bodies of the HTTP API (request bodies are the models in `shopper.codec`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

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
    tier: str = Field(
        "",
        description="the shopper's tier when the list was made: anonymous, "
        "1-9 or 10+ ('' for popular lists)",
    )
    model: str = Field(
        "",
        description="the model that made it: popularity, content, "
        "collaborative, or baseline (no trained model yet)",
    )


def recommendations_body(ranked: RecommendationList, k: int) -> dict[str, Any]:
    """The `RecommendationsOut` shape, built directly: the page path skips re-validating
    its own output (a test checks the two agree)."""
    return {
        "items": [{"item_id": s.item_id, "score": round(s.score, 6)} for s in ranked.items[:k]],
        "variant": ranked.variant,
        "source": ranked.source.value,
        "generated_at": datetime.fromtimestamp(ranked.generated_at, UTC).isoformat(),
        "list_id": ranked.list_id,
        "tier": ranked.tier,
        "model": ranked.model,
    }


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
