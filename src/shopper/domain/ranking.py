"""Ranking maths: decayed popularity, co-occurrence neighbours, session re-ranking."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
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
    popularity = popularity_scores(popular, params)
    return rerank_with_popularity(session, neighbours, popularity, unavailable, params)


def popularity_scores(
    popular: Sequence[tuple[str, float]], params: RankingParams
) -> dict[str, float]:
    """The popular side of the blend, the same for every shopper of a segment: the first
    `popular_candidates`, `popularity_weight` x popularity over the top one's (none if
    that is not positive)."""
    pop = dict(popular[: params.popular_candidates])
    top = max(pop.values(), default=0.0)
    weight = params.popularity_weight
    return {i: weight * (v / top) for i, v in pop.items()} if top > 0 else {}


def rerank_with_popularity(
    session: SessionState,
    neighbours: Callable[[str], Sequence[tuple[str, float]]],
    popularity: Mapping[str, float],
    unavailable: Callable[[Collection[str]], Collection[str]],
    params: RankingParams = RankingParams(),
) -> list[ScoredItem]:
    """`rerank_with_session` with the popular side already scored (`popularity_scores`),
    as the processor has it: once per segment and micro-batch."""
    # Called once per event, so written for speed: one pass per step, and candidates
    # sorted as (-score, id) tuples: best first, ties by id, with no key function.
    scores = _blend(_affinity(session, neighbours, params), popularity, params)
    gone = unavailable(scores.keys())
    gone = gone if isinstance(gone, AbstractSet) else set(gone)
    hidden = set(session.cart).union(session.purchased)
    seen = {i.item_id for i in session.recent}
    penalty = params.seen_penalty
    ranked = [
        (-(score * penalty) if item in seen else -score, item)
        for item, score in scores.items()
        if item not in hidden and item not in gone
    ]
    ranked.sort()
    return [ScoredItem(item, -negated) for negated, item in ranked[: params.k]]


def _affinity(
    session: SessionState,
    neighbours: Callable[[str], Sequence[tuple[str, float]]],
    params: RankingParams,
) -> dict[str, float]:
    """Per neighbour of the session's items: similarity times the item's strength, summed."""
    affinity: dict[str, float] = {}
    get = affinity.get
    for item, strength in session_strengths(session, params).items():
        for other, sim in neighbours(item)[: params.neighbours_per_item]:
            affinity[other] = get(other, 0.0) + strength * sim
    return affinity


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
    affinity: Mapping[str, float], popularity: Mapping[str, float], params: RankingParams
) -> dict[str, float]:
    """`affinity_weight` x affinity over its top, plus the popularity score, for every
    candidate of either (affinity adds none if its top is not positive)."""
    top = max(affinity.values(), default=0.0)
    if top <= 0:
        return dict(popularity)
    weight = params.affinity_weight
    parts = {item: weight * (value / top) for item, value in affinity.items()}
    scores = {**popularity, **parts}
    for item in parts.keys() & popularity.keys():
        scores[item] = parts[item] + popularity[item]
    return scores
