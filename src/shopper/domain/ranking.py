"""Ranking maths: decayed popularity, co-occurrence neighbours, session re-ranking."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from shopper.domain.recommendation import ScoredItem
from shopper.domain.session import SessionState


@dataclass(frozen=True, slots=True)
class RankingParams:
    """Knobs of the session re-ranker; the defaults suit a busy shop."""

    k: int = 20
    affinity_weight: float = 0.8
    popularity_weight: float = 0.2
    recency_decay: float = 0.8
    seen_penalty: float = 0.5
    neighbours_per_item: int = 50
    max_session_items: int = 10
    popular_candidates: int = 50


def decay_factor(age_s: float, half_life_s: float) -> float:
    """How much a signal `age_s` old still counts, halving every `half_life_s`."""
    return math.exp(-math.log(2) * max(age_s, 0.0) / half_life_s)


def forward_weight(weight: float, ts: float, landmark: float, half_life_s: float) -> float:
    """Forward-decayed weight: additive counters that stay comparable over time.

    A hit at `ts` is stored as `weight * 2**((ts - landmark) / half_life)`. Stored sums rank
    exactly as the decayed scores at any later time, so increments never need a read first.
    """
    return weight * math.exp(math.log(2) * (ts - landmark) / half_life_s)


def cosine(co_count: float, count_a: float, count_b: float) -> float:
    """Co-occurrence normalised by both items' volume, so best-sellers do not dominate."""
    if count_a <= 0 or count_b <= 0:
        return 0.0
    return co_count / math.sqrt(count_a * count_b)


def rerank_with_session(
    session: SessionState,
    neighbours: Callable[[str], Sequence[tuple[str, float]]],
    popular: Sequence[tuple[str, float]],
    unavailable: Callable[[Collection[str]], Collection[str]],
    params: RankingParams = RankingParams(),
) -> list[ScoredItem]:
    """Score candidates for one shopper from live session context.

    Candidates are the neighbours of the shopper's recent items plus popular items. Affinity
    sums each neighbour's similarity, weighted by the interaction's strength and recency; it
    is blended with popularity. Cart, purchased and unavailable items (as `unavailable` says
    of the candidates) are never recommended;
    items already seen this session are pushed down.
    """
    affinity: dict[str, float] = {}
    for item, strength in session_strengths(session, params).items():
        for other, sim in neighbours(item)[: params.neighbours_per_item]:
            affinity[other] = affinity.get(other, 0.0) + strength * sim
    pop = dict(popular[: params.popular_candidates])
    scores = _blend(_normalise(affinity), _normalise(pop), params)
    hidden = set(unavailable(scores.keys())) | set(session.cart) | set(session.purchased)
    seen = set(session.recent_items())
    penalised = (
        (item, score * (params.seen_penalty if item in seen else 1.0))
        for item, score in scores.items()
        if item not in hidden
    )
    best = heapq.nsmallest(params.k, penalised, key=lambda kv: (-kv[1], kv[0]))
    return [ScoredItem(item, score) for item, score in best]


def session_strengths(session: SessionState, params: RankingParams) -> dict[str, float]:
    """Interest per distinct recent item: each interaction's weight, decayed by how many
    interactions ago it was, summed per item; at most `max_session_items` items."""
    strengths: dict[str, float] = {}
    for rank, interaction in enumerate(reversed(session.recent)):
        if interaction.item_id not in strengths and len(strengths) >= params.max_session_items:
            continue
        decayed = interaction.weight * params.recency_decay**rank
        strengths[interaction.item_id] = strengths.get(interaction.item_id, 0.0) + decayed
    return strengths


def top_popular(
    popular: Sequence[tuple[str, float]], unavailable: Collection[str], k: int
) -> list[ScoredItem]:
    """The k most popular available items, scores scaled to [0, 1]."""
    norm = _normalise(dict(popular))
    ranked = [ScoredItem(i, round(s, 6)) for i, s in norm.items() if i not in unavailable]
    ranked.sort(key=lambda s: (-s.score, s.item_id))
    return ranked[:k]


def _normalise(scores: Mapping[str, float]) -> dict[str, float]:
    top = max(scores.values(), default=0.0)
    if top <= 0:
        return {}
    return {item: value / top for item, value in scores.items()}


def _blend(
    affinity: Mapping[str, float], pop: Mapping[str, float], params: RankingParams
) -> dict[str, float]:
    items = set(affinity) | set(pop)
    return {
        i: params.affinity_weight * affinity.get(i, 0.0)
        + params.popularity_weight * pop.get(i, 0.0)
        for i in items
    }
