"""Scoring one shopper with a trained model: the ranking code that serves and that
`shopper evaluate` measures (one implementation, called by both).

A shopper's profile is what the model saw of them in training plus what they did since
(live session events), decayed by age. Their tier picks a blend of component scores;
items the shop must not show (sold out, in the cart, already bought where the shop
says so, viewed this session unless asked, the item on the page) are dropped, and so
is every item without a positive score: no list is padded.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from shopper.domain.model import (
    COLLABORATIVE,
    Blend,
    IntArray,
    Neighbours,
    RankingModel,
    Repurchase,
    Vector,
    decay,
    scaled,
)
from shopper.domain.recommendation import ScoredItem
from shopper.domain.tier import LEAD_MODEL, Tier, tier_of

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class LiveInteraction:
    """One interaction the model has not seen: `weight` is its interest (by event type)."""

    item_id: str
    weight: float
    ts: float
    purchase: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """A shopper as the model sees them, at one moment."""

    items: IntArray  # distinct known items they touched
    interest: Vector  # decayed interest in each
    bought: Vector  # decayed purchases of each (their own history)
    interactions: int
    segments: tuple[str, ...] = ()
    hidden: frozenset[int] = field(default_factory=frozenset)  # cart, bought, viewed...


@dataclass(frozen=True, slots=True)
class Ranked:
    items: list[ScoredItem]
    tier: Tier
    model: str  # the tier's lead model, as recorded on the list


def build_profile(
    model: RankingModel,
    subject: str | None,
    now: float,
    live: Iterable[LiveInteraction] = (),
    live_count: int = 0,
    segments: Iterable[str] = (),
    cart: Iterable[str] = (),
    viewed: Iterable[str] = (),
    reshow_viewed: bool = False,
) -> Profile:
    """Trained history of `subject` (if the model knows them) merged with live events.

    Live interactions up to the model's `trained_until` are already in the trained
    history of a known shopper and are not counted twice. `live_count` is how many
    interactions the shopper made live (it moves the tier; for a known shopper only the
    live ones after `trained_until` add to the trained count). Ages count back from the
    model's end of data or the shopper's latest interaction, whichever is later (at most
    `now`), as training counted them: a model served long after its data (a replay of old
    data, an export) must not decay every profile to nothing."""
    settings = model.settings
    # (item position, interest, purchases, time) per interaction or trained pair
    entries: list[tuple[int, float, float, float]] = []
    count = live_count
    known = model.histories.row(subject) if subject else None
    segs = list(segments)
    if known is not None:
        h = model.histories
        entries += zip(
            h.items[known].tolist(),
            h.interest[known].tolist(),
            h.bought[known].tolist(),
            h.last_ts[known].tolist(),
            strict=True,
        )
        i = h.subjects[subject]  # type: ignore[index]
        count += int(h.interactions[i])
        if not segs and h.segments:
            segs = list(h.segments[i])
    since = 0
    for it in live:
        j = model.index.get(it.item_id)
        if j is not None and (known is None or it.ts > model.trained_until):
            entries.append((j, it.weight, 1.0 if it.purchase else 0.0, it.ts))
            since += 1
    if known is not None:
        # Their live count includes what training saw: only what came after counts again.
        count += since - live_count
    latest = max((e[3] for e in entries), default=now)
    reference = min(now, max(latest, model.trained_until))
    interest: dict[int, float] = {}
    bought: dict[int, float] = {}
    for j, weight, purchases, ts in entries:
        age = reference - ts
        # Repeats saturate: the tenth purchase of an item says less than the first.
        strength = math.log1p(weight) * decay(age, settings.interest_half_life_s)
        interest[j] = interest.get(j, 0.0) + strength
        if purchases > 0:
            bought[j] = bought.get(j, 0.0) + purchases * decay(age, settings.own_half_life_s)
    hidden = {model.index[i] for i in cart if i in model.index}
    if settings.repurchase is Repurchase.EXCLUDE:
        hidden |= set(bought)
    if not reshow_viewed:
        hidden |= {model.index[i] for i in viewed if i in model.index}
    items = np.fromiter(interest, dtype=np.int32, count=len(interest))
    return Profile(
        items=items,
        interest=np.array([interest[j] for j in items.tolist()], dtype=np.float64),
        bought=np.array([bought.get(j, 0.0) for j in items.tolist()], dtype=np.float64),
        interactions=count,
        segments=tuple(segs),
        hidden=frozenset(hidden),
    )


def component_scores(
    model: RankingModel, profile: Profile, names: Iterable[str]
) -> dict[str, Vector]:
    """Each named component's scores over the catalog, scaled to a maximum of 1."""
    n = model.n_items
    out: dict[str, Vector] = {}
    for name in names:
        if name == "popularity":
            raw = model.popularity.scores(profile.segments)
        elif name == "content":
            raw = model.content.spread(profile.items, profile.interest, n)
        elif name in model.neighbours:
            raw = model.neighbours[name].spread(profile.items, profile.interest, n)
        elif name == "als" and model.factors is not None:
            raw = model.factors.scores(profile.items, profile.interest)
        elif name == "own":
            raw = np.zeros(n)
            np.add.at(raw, profile.items, profile.bought)
        else:
            raw = np.zeros(n)
        out[name] = scaled(raw)
    return out


def blend_scores(
    components: Mapping[str, Vector], blend: Blend, young: BoolArray | None = None
) -> Vector:
    """The weighted sum of component scores. Young items without behaviour are scored by
    content alone, with the blend's whole weight, until they have behaviour."""
    active = blend.active()
    total = np.zeros_like(next(iter(components.values())))
    for name, w in active:
        total += w * components[name]
    if young is not None and young.any() and "content" in components:
        total[young] = sum(w for _, w in active) * components["content"][young]
    return total


def young_items(model: RankingModel, now: float) -> BoolArray:
    """Items listed less than `new_item_hours` ago that had no behaviour in training.
    The last answer is kept: a micro-batch (or an evaluation step) asks it of one model
    at one moment for every shopper. Read-only: callers must not write into it."""
    global _young_memo
    last = _young_memo  # one read: another thread may swap it meanwhile
    if last is not None and last[0] is model and last[1] == now:
        return last[2]
    age_h = (now - model.listed_at) / 3600.0
    fresh = np.nan_to_num(age_h, nan=np.inf) < model.settings.new_item_hours
    young = np.asarray(fresh & ~model.has_behaviour)
    young.flags.writeable = False
    _young_memo = (model, now, young)
    return young


_young_memo: tuple[RankingModel, float, BoolArray] | None = None


def recommend(
    model: RankingModel,
    profile: Profile,
    k: int,
    now: float,
    unavailable: Collection[str] = (),
    blend: Blend | None = None,
    boost: Mapping[str, float] | None = None,
    lift: Mapping[str, float] | None = None,
) -> Ranked:
    """The shopper's top `k` by their tier's blend (or the `blend` given, to measure one
    model alone); nothing hidden, nothing scored 0. `boost`: live signals the model could
    not know (trending items), each a share of the blend's whole weight. `lift`: factors
    (score times 1 + lift) for items whose offer improved (a price drop): only what the
    shopper would be shown anyway moves up."""
    scored = score_catalog(model, profile, now, blend, boost, lift)
    items = top_k(model, scored.scores, k, profile.hidden, unavailable)
    return Ranked(items, scored.tier, scored.lead)


@dataclass(frozen=True, slots=True)
class CatalogScores:
    """A shopper's scores over the whole catalog, by their tier's blend."""

    tier: Tier
    lead: str  # the blend's lead model (see `lead_of`)
    components: dict[str, Vector]  # each model's scores
    blended: Vector  # the blend of them, before boosts
    scores: Vector  # with boosts and lifts: what the list is ordered by


def score_catalog(
    model: RankingModel,
    profile: Profile,
    now: float,
    blend: Blend | None = None,
    boost: Mapping[str, float] | None = None,
    lift: Mapping[str, float] | None = None,
    names: Iterable[str] = (),
) -> CatalogScores:
    """The scores `recommend` ranks by (see there), with the components (the blend's, and
    `names` besides) behind them."""
    tier = tier_of(profile.interactions, model.settings.thresholds)
    blend = blend or model.blends[tier]
    wanted = dict.fromkeys([name for name, _ in blend.active()])
    wanted.update(dict.fromkeys(["content", *names]))  # content scores young items
    components = component_scores(model, profile, wanted)
    blended = blend_scores(components, blend, young_items(model, now))
    scores = blended.copy()
    if boost:
        total = sum(w for _, w in blend.active())
        for item, share in boost.items():
            j = model.index.get(item)
            if j is not None:
                scores[j] += share * total
    for item, factor in (lift or {}).items():
        j = model.index.get(item)
        if j is not None:
            scores[j] *= 1.0 + factor
    return CatalogScores(tier, lead_of(tier, blend), components, blended, scores)


def top_k(
    model: RankingModel,
    scores: Vector,
    k: int,
    hidden: Collection[int] = (),
    unavailable: Collection[str] = (),
) -> list[ScoredItem]:
    """The k best positive scores, skipping hidden positions and unavailable ids."""
    top, relative = top_positions(model, scores, k, hidden, unavailable)
    ids = model.item_ids
    return [ScoredItem(ids[j], v) for j, v in zip(top.tolist(), relative, strict=True)]


def top_positions(
    model: RankingModel,
    scores: Vector,
    k: int,
    hidden: Collection[int] = (),
    unavailable: Collection[str] = (),
) -> tuple[IntArray, list[float]]:
    """`top_k` as catalog positions, best first, and their scores relative to the best."""
    scores = scores.copy()
    if hidden:
        scores[np.fromiter(hidden, dtype=np.int64)] = 0.0
    blocked = [model.index[i] for i in unavailable if i in model.index]
    if blocked:
        scores[blocked] = 0.0
    positive = int((scores > 0).sum())
    take = min(k, positive)
    if take == 0:
        return np.zeros(0, dtype=np.int64), []
    top = np.argpartition(-scores, take - 1)[:take]
    top = top[np.lexsort((top, -scores[top]))]
    relative = np.round(scores[top] / scores[top[0]], 6)
    # A score too small to survive the rounding is no score: a list is never padded with 0s.
    kept = relative > 0
    return top[kept], relative[kept].tolist()


def lead_of(tier: Tier, blend: Blend) -> str:
    """Which model made the list: the family of the blend's heaviest weight (`popularity`,
    `content`, `collaborative` for EASE, item-kNN and ALS, `own_history`); the tier's
    lead model on a tie or an empty blend."""
    totals: dict[str, float] = {}
    for name, w in blend.active():
        family = FAMILY.get(name, name)
        totals[family] = totals.get(family, 0.0) + w
    lead = LEAD_MODEL[tier]
    if not totals or totals.get(lead, 0.0) >= max(totals.values()):
        return lead
    return max(totals, key=lambda f: totals[f])


FAMILY = {**dict.fromkeys(COLLABORATIVE, "collaborative"), "own": "own_history"}


# Item-item neighbour tables a similar list blends, each scaled per item to a maximum of 1
# and weighed alike: behaviour (collaborative) where the model has it, and content, which
# is all a new item has.
SIMILAR_TABLES = ("ease", "itemknn", "content")


def similar_items(model: RankingModel, item_id: str, k: int) -> list[ScoredItem]:
    """The `k` items most similar to `item_id` (none if the model does not know it),
    never the item itself, nothing scored 0, scores relative to the best."""
    j = model.index.get(item_id)
    if j is None:
        return []
    return similar_rows(model, np.array([j], dtype=np.int32), k)[0]


def similar_rows(model: RankingModel, rows: IntArray, k: int) -> list[list[ScoredItem]]:
    """`similar_items` for many item positions at once: a few sorts over all their
    neighbours rather than a Python loop per item (a catalog takes seconds, not minutes)."""
    n, tables = model.n_items, _similar_tables(model)
    if not tables or len(rows) == 0:
        return [[] for _ in rows]
    keys, weights = zip(*(_scaled_neighbours(t, rows, n) for t in tables), strict=True)
    # Sum each (row, neighbour) pair over the tables: sort by pair, add up the runs.
    key, weight = np.concatenate(keys), np.concatenate(weights)
    by_pair = np.argsort(key)
    key, weight = key[by_pair], weight[by_pair]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    pair, score = key[first], np.add.reduceat(weight, first)
    owner, other = pair // n, pair % n
    # Per row best first, ties in item order (pairs are sorted; a stable sort keeps it).
    # A summed score is at most len(tables), so rows never interleave.
    order = np.argsort(owner * (len(tables) + 1) - score, kind="stable")
    owner, other, score = owner[order], other[order], score[order]
    starts = np.searchsorted(owner, np.arange(len(rows) + 1))
    rank = np.arange(len(owner)) - starts[owner]
    top = rank < k
    relative = np.round(score / score[starts[owner]], 6)
    ids, scores = other[top].tolist(), relative[top].tolist()
    bounds = np.searchsorted(owner[top], np.arange(len(rows) + 1)).tolist()
    return [
        [
            ScoredItem(model.item_ids[j], s)
            for j, s in zip(ids[a:b], scores[a:b], strict=True)
            if s > 0
        ]
        for a, b in pairwise(bounds)
    ]  # as in `top_k`: a score too small to survive rounding is no score


def similarity(
    model: RankingModel, sources: IntArray, candidates: IntArray
) -> npt.NDArray[np.float64]:
    """How similar each candidate is to each source item (rows: sources), as the similar
    lists see it: each neighbour table's weight, scaled per source to a maximum of 1,
    averaged over the tables (0 where a candidate is none of a source's neighbours)."""
    n, tables = model.n_items, _similar_tables(model)
    out = np.zeros((len(sources), len(candidates)))
    if not tables or len(sources) == 0 or len(candidates) == 0:
        return out
    # Each source's neighbours are looked up in a catalog-wide column map: no sorting, one
    # pass over the sources' neighbour rows per table (the processor runs this per list).
    column = np.full(n, -1, dtype=np.int64)
    column[candidates] = np.arange(len(candidates))
    for table in tables:
        idx = table.index[sources]
        w = table.weight[sources]
        keep = (idx >= 0) & (w > 0) & (idx != sources[:, None])
        top = np.where(keep, w, 0).max(axis=1, initial=0)
        cols = np.where(keep, column[idx], -1)  # idx -1 reads the map's last: masked
        rows, at = np.nonzero(cols >= 0)
        # A row's neighbours are distinct, so each (source, candidate) is hit once a table.
        out[rows, cols[rows, at]] += w[rows, at].astype(np.float64) / top[rows].astype(np.float64)
    return out / len(tables)


def _similar_tables(model: RankingModel) -> list[Neighbours]:
    found = (model.content if n == "content" else model.neighbours.get(n) for n in SIMILAR_TABLES)
    return [t for t in found if t is not None]


def _scaled_neighbours(
    table: Neighbours, rows: IntArray, n: int
) -> tuple[npt.NDArray[np.int64], Vector]:
    """Each row's positive neighbours other than itself, as keys `row * n + neighbour`
    (`row`: position in `rows`), with weights scaled to a maximum of 1 per row."""
    idx = table.index[rows].astype(np.int64)
    w = table.weight[rows].astype(np.float64)
    keep = (idx >= 0) & (w > 0) & (idx != rows[:, None])
    w = np.where(keep, w, 0.0)
    top = w.max(axis=1, initial=0.0)
    owner, col = np.nonzero(keep)
    return owner * n + idx[owner, col], w[owner, col] / top[owner]
