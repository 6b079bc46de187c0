"""The ranking stage: dirty shoppers in, lists out. The processor calls it after folding
a micro-batch into state; it stays stream plumbing.

With a promoted model in the model store, each shopper is scored by their tier's blend
(`domain.recommender`), from what the model saw of them plus their live session. With
none yet (a new shop), the baseline ranker runs: live co-occurrence neighbours and
decayed popularity (`domain.ranking`). A newly promoted model is picked up without a
restart: the stage polls the store's promotion stamp every `model_poll_s`. A model with a
learned ranker, with the feature store on, has its candidates ordered by it
(`services.learned_ranking`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shopper.domain.model import RankingModel
from shopper.domain.ranking import (
    RankingParams,
    popularity_scores,
    rerank_with_popularity,
    session_strengths,
)
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList, ScoredItem, Source
from shopper.domain.recommender import LiveInteraction, build_profile, recommend, similar_rows
from shopper.domain.segment import (
    DEFAULT_SEGMENTS,
    GLOBAL_SEGMENT,
    SegmentPolicy,
    hour_segment,
)
from shopper.domain.session import SessionState
from shopper.domain.trending import trending_scores
from shopper.ports.cache import ListKey, RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.flags import FlagClient, ListLog
from shopper.ports.model_store import ModelStore
from shopper.ports.processor_state import ProcessorState
from shopper.services.catalog_filter import CatalogFilter
from shopper.services.feature_pipeline import sampled_entity
from shopper.services.learned_ranking import LearnedFeatures, LearnedRanking
from shopper.services.priority import PAGES_SERVED_HERE
from shopper.services.variants import ModelPool, routes

log = logging.getLogger(__name__)

BASELINE = "baseline"
SESSION_GAP_S = 1800.0  # interactions this close to the last one are "this session"
SIMILAR_MODEL = "similar"  # the `model` recorded on similar lists
SIMILAR_CHUNK = 1000  # items per similar-list chunk: one short cache write each
PRICE_DROP_S = 86_400.0  # a price drop lifts an item for a day
SOLD_OUT_MARGIN = 10  # items scored beyond the list size, for the sold-out ones dropped
TRENDING_CANDIDATES = 100  # live top items checked for a trend
YIELD_EVERY_S = 0.002  # ranking hands the GIL to page reads at least this often


@dataclass(frozen=True, slots=True)
class RankingSettings:
    list_size: int = 50
    reshow_viewed: bool = False
    model_poll_s: float = 5.0
    trending_weight: float = 0.3
    price_drop_weight: float = 0.5
    learned_ranker: bool = True  # use a promoted model's learned ranker (with features)
    vector_log_sample: float = 0.05  # share of shoppers whose ranked vectors are logged
    feature_wait_s: float = 0.05  # for the batch's features to be online, at most
    shadow_log_sample: float = 0.05  # share of shoppers whose shadow lists are logged
    segments: SegmentPolicy = DEFAULT_SEGMENTS  # the popularity segments counted


@dataclass(slots=True)
class RankingStats:
    tiers: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    model_version: str | None = None
    model_loads: int = 0
    trending: int = 0  # items trending at the last micro-batch
    learned_lists: int = 0  # lists the learned ranker ordered
    feature_reads: int = 0  # online reads for it (users and items: one each per batch)
    feature_read_failures: int = 0  # batches served in the blends' order instead
    feature_waits_timed_out: int = 0  # batches ranked on rows a batch behind
    vectors_logged: int = 0
    vector_batches_skipped: int = 0  # a push overlapped the reads: no vector logged
    variants: Counter[str] = field(default_factory=Counter)  # served lists per variant
    shadow_lists: int = 0  # written and logged, never served


def ranking_stats(all_stats: list[RankingStats]) -> dict[str, Any]:
    """Lists written per tier and per model (shares of all), and the model served."""
    tiers: Counter[str] = Counter()
    models: Counter[str] = Counter()
    variants: Counter[str] = Counter()
    for st in all_stats:
        tiers.update(st.tiers)
        models.update(st.models)
        variants.update(st.variants)
    total = sum(tiers.values()) or 1
    versions = sorted({st.model_version for st in all_stats if st.model_version})
    return {
        "model_versions": versions,
        "lists_by_tier": dict(tiers),
        "lists_by_model": dict(models),
        "tier_share": {t: round(n / total, 4) for t, n in tiers.items()},
        "trending_items": sum(st.trending for st in all_stats),
        "lists_by_variant": dict(variants),
        "shadow_lists": sum(st.shadow_lists for st in all_stats),
        "learned": {
            "lists": sum(st.learned_lists for st in all_stats),
            "feature_reads": sum(st.feature_reads for st in all_stats),
            "feature_read_failures": sum(st.feature_read_failures for st in all_stats),
            "feature_waits_timed_out": sum(st.feature_waits_timed_out for st in all_stats),
            "vectors_logged": sum(st.vectors_logged for st in all_stats),
            "vector_batches_skipped": sum(st.vector_batches_skipped for st in all_stats),
        },
    }


class RankingStage:
    def __init__(
        self,
        state: ProcessorState,
        cache: RecommendationCache,
        clock: Clock,
        settings: RankingSettings,
        models: ModelStore | None = None,
        features: LearnedFeatures | None = None,
        flags: FlagClient | None = None,
        shadow_log: ListLog | None = None,
    ) -> None:
        self._state = state
        self._cache = cache
        self._clock = clock
        self._settings = settings
        self._models = models
        self._flags = flags
        self._shadow_log = shadow_log
        self._pool = ModelPool(models)
        self._params = RankingParams(k=settings.list_size)
        self._model: RankingModel | None = None
        self._stamp: str | None = None
        self._next_poll = 0.0
        self._drops: dict[str, tuple[float, float]] = {}  # item -> (drop share, when)
        self.catalog = CatalogFilter(state)  # only catalog items are recommended
        self.stats = RankingStats()
        self._learned = (
            LearnedRanking(
                features,
                settings.list_size + SOLD_OUT_MARGIN,
                settings.feature_wait_s,
                settings.vector_log_sample,
                self.stats,
            )
            if features is not None
            else None
        )

    @property
    def model(self) -> RankingModel | None:
        return self._model

    def refresh_model(self, force: bool = False) -> None:
        """Load the promoted model if the promotion changed (at most every `model_poll_s`).
        A store that cannot be read keeps the model in use: lists must keep coming."""
        if self._models is None or (not force and time.monotonic() < self._next_poll):
            return
        self._next_poll = time.monotonic() + self._settings.model_poll_s
        try:
            stamp = self._models.promoted_stamp()
            if stamp == self._stamp:
                return
            model = self._models.load_promoted()
        except Exception:
            log.exception("model store unreadable; keeping model %s", self.stats.model_version)
            return
        self._stamp = stamp
        self._model = model
        self.stats.model_version = model.version if model else None
        self.stats.model_loads += 1
        log.info("serving model %s", self.stats.model_version or BASELINE)

    def trained_segments(self) -> list[str]:
        """The popularity segments the served model knows (`country:gb`, ...) that a page
        can ask for (the trainer counts every value its data holds: made-up ones too)."""
        model, policy = self._model, self._settings.segments
        if model is None:
            return []
        return [s for s in model.popularity.segments if ":" in s and policy.makes(s)]

    def with_trained_popularity(
        self, segment: str, live: list[tuple[str, float]], n: int
    ) -> list[tuple[str, float]]:
        """Live popularity first; then the model's trained popularity for the segment, then
        its newest items (a catalog with no events yet), each scored below the one before,
        so a popular list is never empty while the shop has items."""
        model = self._model
        if model is None or len(live) >= n:
            return live
        trained = model.popularity.segments.get(segment, model.popularity.segments["global"])
        if trained.any():
            order = np.argsort(-trained, kind="stable")[: int((trained > 0).sum())]
        else:  # no behaviour at all yet: the newest items
            order = np.argsort(-np.nan_to_num(model.listed_at, nan=-np.inf), kind="stable")
        out = list(live)
        seen = {i for i, _ in live}
        floor = min((w for _, w in live), default=1.0)
        for rank, j in enumerate(order[: n * 2].tolist()):
            item = model.item_ids[j]
            if item not in seen and len(out) < n:
                out.append((item, floor * 0.5 / (rank + 1)))
                seen.add(item)
        return self.catalog.known_only(out)

    def similar_lists(self, k: int) -> list[tuple[str, RecommendationList]]:
        """Every item of the served model with its `k` most similar items (none without a
        model). Sold-out items are left in: the page filters them at read time."""
        return [entry for chunk in self.similar_chunks(k) for entry in chunk]

    def similar_chunks(
        self, k: int, size: int = SIMILAR_CHUNK
    ) -> Iterator[list[tuple[str, RecommendationList]]]:
        """`similar_lists` `size` items at a time, so a large catalog is never held whole
        and page reads get the GIL between chunks."""
        model = self._model
        if model is None:
            return
        now = self._clock.now()
        for start in range(0, model.n_items, size):
            rows = np.arange(start, min(start + size, model.n_items), dtype=np.int32)
            similar = similar_rows(model, rows, k)
            unknown = self.catalog.unknown_among(
                {model.item_ids[j] for j in rows.tolist()}
                | {s.item_id for items in similar for s in items}
            )
            chunk = []
            for j, items in zip(rows.tolist(), similar, strict=True):
                item = model.item_ids[j]
                if item in unknown:
                    continue
                listed = tuple(s for s in items if s.item_id not in unknown)
                rec = RecommendationList(
                    listed, DEFAULT_VARIANT, Source.SIMILAR, now, f"similar:{item}",
                    "", SIMILAR_MODEL,
                )  # fmt: skip
                chunk.append((item, rec))
            yield chunk
            time.sleep(0)  # hand the GIL to a waiting page read (see `_yielding`)

    def rank(self, sessions: Sequence[SessionState]) -> list[tuple[ListKey, RecommendationList]]:
        """A list per shopper for their assigned variant, and one per shadow variant, each
        by the variant's model, without sold-out items."""
        self.refresh_model()
        if not sessions:
            return []
        now = self._clock.now()
        lists, shadows = [], []
        for route in routes(self._flags, sessions):
            model, usable = self._pool.get(route.model, self._model)
            if not usable:
                continue
            made = (
                self._rank_with_model(model, route.sessions, now)
                if model is not None
                else self._rank_baseline(route.sessions)
            )
            for session, (items, tier, name) in zip(route.sessions, made, strict=True):
                # A random 128-bit id, as a UUID4's hex, at a quarter of the cost.
                rec = RecommendationList(
                    tuple(items), route.variant, Source.PERSONALIZED, now, os.urandom(16).hex(),
                    tier, name,
                )  # fmt: skip
                lists.append((ListKey(session.subject, route.variant), rec))
                if route.shadow:
                    self.stats.shadow_lists += 1
                    if sampled_entity(session.subject, self._settings.shadow_log_sample):
                        shadows.append(lists[-1])
                else:
                    self.stats.tiers[tier] += 1
                    self.stats.models[name] += 1
                    self.stats.variants[route.variant] += 1
        self._log_shadows(shadows)
        return lists

    def _log_shadows(self, shadows: list[tuple[ListKey, RecommendationList]]) -> None:
        if self._shadow_log is None or not shadows:
            return
        try:
            self._shadow_log.append(shadows)
        except Exception:  # a full disk must not stop the lists
            log.exception("shadow list log unwritable")

    def _rank_with_model(
        self, model: RankingModel, sessions: Sequence[SessionState], now: float
    ) -> list[tuple[list[ScoredItem], str, str]]:
        # Scored first with room to spare, then one stock look-up for the whole batch.
        size = self._settings.list_size
        hour = hour_segment(now)
        segments = self._settings.segments
        profiles = [
            build_profile(
                model,
                session.subject,
                now,
                live=live_interactions(session),
                live_count=session.interactions,
                segments=[*segments.segments(session.country, session.device), hour],
                cart=session.cart,
                viewed=viewed_this_session(session),
                reshow_viewed=self._settings.reshow_viewed,
            )
            for session in _yielding(sessions)
        ]
        ranker = model.ranker if self._settings.learned_ranker else None
        learned = None
        if ranker is not None and self._learned is not None:
            learned = self._learned.rank(model, ranker, sessions, profiles, now)
        if learned is not None:
            ranked = learned
        else:
            # The learned ranker reads trends and prices as features; the blends get them
            # as hand-set boosts.
            boost, lift = self._trending(model), self._price_drops(now)
            ranked = [
                recommend(model, p, size + SOLD_OUT_MARGIN, now, boost=boost, lift=lift)
                for p in profiles
            ]
        candidates = {s.item_id for r in ranked for s in r.items}
        sold_out = self._unavailable(candidates)
        return [
            ([s for s in r.items if s.item_id not in sold_out][:size], r.tier.value, r.model)
            for r in ranked
        ]

    def note_price(
        self, item_id: str, before: float | None, after: float | None, ts: float
    ) -> None:
        """A price change seen on the stream: a drop lifts the item for `PRICE_DROP_S`, by
        `price_drop_weight` times the drop's share of the old price (at most half off)."""
        if before is None or after is None or before <= 0:
            return
        if after < before:
            self._drops[item_id] = (min((before - after) / before, 0.5) / 0.5, ts)
        else:
            self._drops.pop(item_id, None)  # back up: the offer is over

    def _price_drops(self, now: float) -> dict[str, float]:
        weight = self._settings.price_drop_weight
        for item in [i for i, (_, ts) in self._drops.items() if now - ts > PRICE_DROP_S]:
            del self._drops[item]
        return {item: weight * share for item, (share, _) in self._drops.items()} if weight else {}

    def _trending(self, model: RankingModel) -> dict[str, float]:
        """Items trending now (live popularity far above the trained one), weighted by
        `trending_weight`; read once per micro-batch."""
        weight = self._settings.trending_weight
        if weight <= 0:
            return {}
        live = self.catalog.popular(GLOBAL_SEGMENT, TRENDING_CANDIDATES)
        trained = model.popularity.segments["global"]
        expected = {i: float(trained[model.index[i]]) for i, _ in live if i in model.index}
        trend = trending_scores(live, expected)
        self.stats.trending = len(trend)
        return {item: weight * score for item, score in trend.items()}

    def _rank_baseline(
        self, sessions: Sequence[SessionState]
    ) -> list[tuple[list[ScoredItem], str, str]]:
        """Live co-occurrence and popularity, for a shop with no trained model yet. What
        ranking reads is fetched once for the whole micro-batch, not once per shopper."""
        recent = {i for s in sessions for i in session_strengths(s, self._params)}
        neighbours = self._state.neighbours_many(recent, self._params.neighbours_per_item)
        policy = self._settings.segments
        segment_of = {s.subject: policy.segments(s.country, s.device)[0] for s in sessions}
        popular = {
            segment: self.catalog.popular(segment, self._params.popular_candidates)
            for segment in set(segment_of.values())
        }
        candidates = {i for row in (*neighbours.values(), *popular.values()) for i, _ in row}
        if unknown := self.catalog.unknown_among(candidates):
            # Out before scoring: an unlisted neighbour would still scale the affinity of
            # the listed ones (each is scored against the top), and reorder honest lists.
            neighbours = {
                item: [row for row in rows if row[0] not in unknown]
                for item, rows in neighbours.items()
            }
        sold_out = self._cache.sold_out_among(candidates)
        scored = {s: popularity_scores(rows, self._params) for s, rows in popular.items()}
        out = []
        for session in _yielding(sessions):
            items = rerank_with_popularity(
                session,
                lambda item: neighbours.get(item, []),
                scored[segment_of[session.subject]],
                lambda _: sold_out,
                self._params,
            )
            tier = "anonymous" if session.interactions == 0 else "live"
            out.append((items, tier, BASELINE))
        return out

    def _unavailable(self, candidates: set[str]) -> set[str]:
        """The candidates no list may carry: sold out, or unknown to the catalog (one
        read each for the whole batch)."""
        if not candidates:
            return set()
        return set(self._cache.sold_out_among(candidates)) | self.catalog.unknown_among(candidates)


def live_interactions(session: SessionState) -> list[LiveInteraction]:
    bought = set(session.purchased)
    return [
        LiveInteraction(i.item_id, i.weight, i.ts, purchase=i.item_id in bought)
        for i in session.recent
    ]


def viewed_this_session(session: SessionState) -> list[str]:
    """Items touched within `SESSION_GAP_S` of the shopper's latest interaction."""
    return [i.item_id for i in session.recent if session.last_seen - i.ts <= SESSION_GAP_S]


def _yielding(sessions: Sequence[SessionState]) -> Iterator[SessionState]:
    if not PAGES_SERVED_HERE.is_set():  # nobody here waits for the GIL to serve a page
        yield from sessions
        return
    last = time.perf_counter()
    for session in sessions:
        if time.perf_counter() - last > YIELD_EVERY_S:
            # Let a waiting page read take the GIL (embedded mode runs the API in this
            # process); sleep(0) releases it without waiting.
            time.sleep(0)
            last = time.perf_counter()
        yield session
