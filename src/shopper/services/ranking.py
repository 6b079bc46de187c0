"""The ranking stage: dirty shoppers in, lists out. The processor calls it after folding
a micro-batch into state; it stays stream plumbing.

With a promoted model in the model store, each shopper is scored by their tier's blend
(`domain.recommender`), from what the model saw of them plus their live session. With
none yet (a new shop), the baseline ranker runs: live co-occurrence neighbours and
decayed popularity (`domain.ranking`). A newly promoted model is picked up without a
restart: the stage polls the store's promotion stamp every `model_poll_s`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from shopper.domain.features.engine import ITEM, USER
from shopper.domain.features.pair import PAIR_FEATURES, SHOPPER_ITEM, ItemPart
from shopper.domain.features.spec import SESSION_CONTEXT, USER_PROFILE, FeatureRow
from shopper.domain.learned import (
    FEATURE_NAMES,
    Candidates,
    LearnedRanker,
    Matrix,
    StoreRows,
    candidate_matrix,
    candidates_of,
    order_by_scores,
)
from shopper.domain.model import RankingModel
from shopper.domain.ranking import RankingParams, rerank_with_session, session_strengths
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList, ScoredItem, Source
from shopper.domain.recommender import (
    LiveInteraction,
    Profile,
    Ranked,
    build_profile,
    recommend,
    similar_rows,
)
from shopper.domain.segment import GLOBAL_SEGMENT, hour_segment, popularity_segments
from shopper.domain.session import SessionState
from shopper.domain.trending import trending_scores
from shopper.ports.cache import ListKey, RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.feature_store import FeatureLog, FeatureStore, ServedRow
from shopper.ports.model_store import ModelStore
from shopper.ports.processor_state import ProcessorState
from shopper.services.feature_pipeline import sampled_entity

log = logging.getLogger(__name__)

BASELINE = "baseline"
SESSION_GAP_S = 1800.0  # interactions this close to the last one are "this session"
SIMILAR_MODEL = "similar"  # the `model` recorded on similar lists
SIMILAR_CHUNK = 1000  # items per similar-list chunk: one short cache write each
PRICE_DROP_S = 86_400.0  # a price drop lifts an item for a day
SOLD_OUT_MARGIN = 10  # items scored beyond the list size, for the sold-out ones dropped
TRENDING_CANDIDATES = 100  # live top items checked for a trend
VECTORS_LOGGED = 10  # of each sampled list: its top, what the shopper sees first
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


# (entity kind, entity id, row as_of) -> how many events the online row was computed
# from, if this process computed it (see FeaturePipeline.events_seen); for the skew check.
EventsSeen = Callable[[str, str, float], int | None]


@dataclass(slots=True)
class LearnedFeatures:
    """What the learned ranker reads features through: the online store, and where the
    vectors it ranked by are logged for the skew check."""

    open_store: Callable[[], FeatureStore]
    log: FeatureLog | None = None
    events_seen: EventsSeen | None = None
    # Waits (at most the seconds given) until the events handed to the feature pipeline
    # have their rows online; False if it timed out.
    pushed: Callable[[float], bool] | None = None
    store: FeatureStore | None = None

    def connected(self) -> FeatureStore:
        if self.store is None:  # opened on the processor's thread, which reads it
            self.store = self.open_store()
        return self.store


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


class RankingStage:
    def __init__(
        self,
        state: ProcessorState,
        cache: RecommendationCache,
        clock: Clock,
        settings: RankingSettings,
        models: ModelStore | None = None,
        features: LearnedFeatures | None = None,
    ) -> None:
        self._state = state
        self._cache = cache
        self._clock = clock
        self._settings = settings
        self._models = models
        self._features = features
        self._params = RankingParams(k=settings.list_size)
        self._model: RankingModel | None = None
        self._stamp: str | None = None
        self._next_poll = 0.0
        self._drops: dict[str, tuple[float, float]] = {}  # item -> (drop share, when)
        self.stats = RankingStats()

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
        """The popularity segments the served model knows (`country:gb`, ...)."""
        model = self._model
        return [] if model is None else [s for s in model.popularity.segments if ":" in s]

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
        return out

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
            chunk = []
            for j, items in zip(rows.tolist(), similar_rows(model, rows, k), strict=True):
                item = model.item_ids[j]
                rec = RecommendationList(
                    tuple(items), DEFAULT_VARIANT, Source.SIMILAR, now, f"similar:{item}",
                    "", SIMILAR_MODEL,
                )  # fmt: skip
                chunk.append((item, rec))
            yield chunk
            time.sleep(0)  # hand the GIL to a waiting page read (see `_yielding`)

    def rank(self, sessions: Sequence[SessionState]) -> list[tuple[ListKey, RecommendationList]]:
        """A list per shopper, without sold-out items."""
        self.refresh_model()
        if not sessions:
            return []
        now = self._clock.now()
        model = self._model
        made = (
            self._rank_with_model(model, sessions, now)
            if model is not None
            else self._rank_baseline(sessions)
        )
        lists = []
        for session, (items, tier, name) in zip(sessions, made, strict=True):
            rec = RecommendationList(
                tuple(items), DEFAULT_VARIANT, Source.PERSONALIZED, now, uuid.uuid4().hex,
                tier, name,
            )  # fmt: skip
            self.stats.tiers[tier] += 1
            self.stats.models[name] += 1
            lists.append((ListKey(session.subject, DEFAULT_VARIANT), rec))
        return lists

    def _rank_with_model(
        self, model: RankingModel, sessions: Sequence[SessionState], now: float
    ) -> list[tuple[list[ScoredItem], str, str]]:
        # Scored first with room to spare, then one stock look-up for the whole batch.
        size = self._settings.list_size
        hour = hour_segment(now)
        profiles = [
            build_profile(
                model,
                session.subject,
                now,
                live=live_interactions(session),
                live_count=session.interactions,
                segments=[*popularity_segments(session.country, session.device), hour],
                cart=session.cart,
                viewed=viewed_this_session(session),
                reshow_viewed=self._settings.reshow_viewed,
            )
            for session in _yielding(sessions)
        ]
        ranker = model.ranker if self._settings.learned_ranker else None
        learned = None
        if ranker is not None and self._features is not None:
            learned = self._rank_learned(model, ranker, sessions, profiles, now)
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
        sold_out = self._cache.sold_out_among(candidates) if candidates else set()
        return [
            ([s for s in r.items if s.item_id not in sold_out][:size], r.tier.value, r.model)
            for r in ranked
        ]

    def _rank_learned(
        self,
        model: RankingModel,
        ranker: LearnedRanker,
        sessions: Sequence[SessionState],
        profiles: Sequence[Profile],
        now: float,
    ) -> list[Ranked] | None:
        """Each shopper's candidates ordered by the learned ranker, from one online read
        of the batch's shoppers and one of all their candidates; None (the blends' order
        is served) when the feature store cannot be read."""
        assert self._features is not None
        cands = [candidates_of(model, p, ranker.candidates, now) for p in profiles]
        wait = self._features.pushed
        if wait is not None and not wait(self._settings.feature_wait_s):
            self.stats.feature_waits_timed_out += 1
        try:
            store = self._features.connected()
            users = store.read_users([s.subject for s in sessions])
            items = store.read_items(sorted({i for c in cands for i in c.item_ids}))
            self.stats.feature_reads += 2
        except Exception:
            self.stats.feature_read_failures += 1
            log.exception("feature store unreadable; serving the blends' order")
            return None
        parts: dict[str, ItemPart] = {}  # each item's features once for the batch
        rows = [StoreRows(users.get(s.subject, {}), items, parts) for s in sessions]
        matrices = [candidate_matrix(model, c, r) for c, r in zip(cands, rows, strict=True)]
        scores = ranker.scorer.predict(np.vstack(matrices)) if matrices else np.zeros(0)
        bounds = np.cumsum([0, *(len(m) for m in matrices)]).tolist()
        size = self._settings.list_size + SOLD_OUT_MARGIN
        ranked = [
            order_by_scores(c, scores[a:b], size)
            for c, a, b in zip(cands, bounds[:-1], bounds[1:], strict=True)
        ]
        self.stats.learned_lists += len(ranked)
        self._log_vectors(sessions, rows, cands, matrices, ranked, now)
        return ranked

    def _log_vectors(
        self,
        sessions: Sequence[SessionState],
        rows: Sequence[StoreRows],
        cands: Sequence[Candidates],
        matrices: Sequence[Matrix],
        ranked: Sequence[Ranked],
        now: float,
    ) -> None:
        """The `shopper_item` features of the top of each sampled shopper's list, with the
        times of the rows they were computed from, for `shopper features check-skew`."""
        features, rate = self._features, self._settings.vector_log_sample
        if features is None or features.log is None or rate <= 0:
            return
        logged = []
        pair_at = len(FEATURE_NAMES) - len(PAIR_FEATURES)
        for session, store_rows, c, m, r in zip(
            sessions, rows, cands, matrices, ranked, strict=True
        ):
            if not sampled_entity(session.subject, rate):
                continue
            row_of = {item: i for i, item in enumerate(c.item_ids)}
            for item in r.items[:VECTORS_LOGGED]:
                read = m[row_of[item.item_id], pair_at:].tolist()
                vector = served_vector(session.subject, item.item_id, read, store_rows, now,
                                       features.events_seen)  # fmt: skip
                logged.append(ServedRow(vector))
        if logged:
            try:
                features.log.append(logged)
                self.stats.vectors_logged += len(logged)
            except Exception:
                log.exception("feature vector log unwritable")

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
        live = self._state.popular(GLOBAL_SEGMENT, TRENDING_CANDIDATES)
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
        segment_of = {s.subject: popularity_segments(s.country, s.device)[0] for s in sessions}
        popular = {
            segment: self._state.popular(segment, self._params.popular_candidates)
            for segment in set(segment_of.values())
        }
        candidates = {i for row in (*neighbours.values(), *popular.values()) for i, _ in row}
        sold_out = self._cache.sold_out_among(candidates)
        out = []
        for session in _yielding(sessions):
            items = rerank_with_session(
                session,
                lambda item: neighbours.get(item, []),
                popular[segment_of[session.subject]],
                lambda _: sold_out,
                self._params,
            )
            tier = "anonymous" if session.interactions == 0 else "live"
            out.append((items, tier, BASELINE))
        return out


def served_vector(
    subject: str,
    item_id: str,
    read: Sequence[float],
    rows: StoreRows,
    now: float,
    events_seen: EventsSeen | None,
) -> FeatureRow:
    """A logged `shopper_item` vector: the pair features the ranker read (`read`, in
    `PAIR_FEATURES` order), the item, and the time (and, where known, the number of
    events) of each row they came from."""
    user, item = rows.user.get(USER_PROFILE.name), rows.items.get(item_id)
    session = rows.user.get(SESSION_CONTEXT.name)

    def seen(kind: str, row: FeatureRow | None) -> int | None:
        if row is None or events_seen is None:
            return None
        return events_seen(kind, row.entity_id, row.as_of)

    values = dict(zip(PAIR_FEATURES, read, strict=True))
    return FeatureRow(
        SHOPPER_ITEM.name,
        subject,
        now,
        {
            **values,
            "item_id": item_id,
            "user_as_of": user.as_of if user else None,
            "session_as_of": session.as_of if session else None,
            "item_as_of": item.as_of if item else None,
            "user_events": seen(USER, user),
            "item_events": seen(ITEM, item),
        },
    )


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
    last = time.perf_counter()
    for session in sessions:
        if time.perf_counter() - last > YIELD_EVERY_S:
            # Let a waiting page read take the GIL (embedded mode runs the API in this
            # process); sleep(0) releases it without waiting.
            time.sleep(0)
            last = time.perf_counter()
        yield session
