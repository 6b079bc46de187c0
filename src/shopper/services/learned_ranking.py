"""The learned ranker in the processor's micro-batch: each shopper's candidates ordered
from the online feature store's rows, the vectors it ranked by logged for the skew check.
`RankingStage` calls it when the served model has a ranker and the feature store is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shopper.domain.features.engine import ITEM, USER
from shopper.domain.features.pair import PAIR_FEATURES, SHOPPER_ITEM, item_table
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
from shopper.domain.recommender import Profile, Ranked
from shopper.domain.session import SessionState
from shopper.ports.feature_store import FeatureLog, FeatureStore, ServedRow
from shopper.services.feature_pipeline import sampled_entity

if TYPE_CHECKING:
    from shopper.services.ranking import RankingStats

log = logging.getLogger(__name__)

VECTORS_LOGGED = 10  # of each sampled list: its top, what the shopper sees first


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
    # Pushes begun and ended by the pipeline (odd: one under way); see `FeaturePipeline`.
    pushes: Callable[[], int] | None = None
    store: FeatureStore | None = None

    def connected(self) -> FeatureStore:
        if self.store is None:  # opened on the processor's thread, which reads it
            self.store = self.open_store()
        return self.store


class LearnedRanking:
    """Orders a micro-batch's shoppers' candidates with a model's learned ranker."""

    def __init__(
        self,
        features: LearnedFeatures,
        size: int,
        wait_s: float,
        log_sample: float,
        stats: RankingStats,
    ) -> None:
        self._features = features
        self._size = size  # items per list, with room for the sold-out ones dropped
        self._wait_s = wait_s
        self._log_sample = log_sample
        self.stats = stats

    def rank(
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
        cands = [candidates_of(model, p, ranker.candidates, now) for p in profiles]
        wait = self._features.pushed
        if wait is not None and not wait(self._wait_s):
            self.stats.feature_waits_timed_out += 1
        try:
            store = self._features.connected()
            pushes = self._features.pushes
            before = pushes() if pushes is not None else 0
            users = store.read_users([s.subject for s in sessions])
            wanted = sorted({i for c in cands for i in c.item_ids})
            items = store.read_items(wanted)
            seen = self._counts(sessions, users, items, cands)
            # A push that overlapped the reads leaves unknown which rows' counts were
            # read: this batch logs no vector (one whose inputs cannot be accounted for).
            overlapped = pushes is not None and (before % 2 == 1 or pushes() != before)
            self.stats.feature_reads += 2
        except Exception:
            self.stats.feature_read_failures += 1
            log.exception("feature store unreadable; serving the blends' order")
            return None
        table = item_table(items, wanted)  # each item's features once for the batch
        rows = [StoreRows(users.get(s.subject, {}), items, table) for s in sessions]
        matrices = [candidate_matrix(model, c, r) for c, r in zip(cands, rows, strict=True)]
        scores = ranker.scorer.predict(np.vstack(matrices)) if matrices else np.zeros(0)
        bounds = np.cumsum([0, *(len(m) for m in matrices)]).tolist()
        ranked = [
            order_by_scores(c, scores[a:b], self._size)
            for c, a, b in zip(cands, bounds[:-1], bounds[1:], strict=True)
        ]
        self.stats.learned_lists += len(ranked)
        if overlapped:
            self.stats.vector_batches_skipped += 1
        else:
            self._log_vectors(sessions, rows, cands, matrices, ranked, now, seen)
        return ranked

    def _counts(
        self,
        sessions: Sequence[SessionState],
        users: Mapping[str, Mapping[str, FeatureRow]],
        items: Mapping[str, FeatureRow],
        cands: Sequence[Candidates],
    ) -> EventsSeen | None:
        """For the shoppers whose vectors are logged: how many events each row read was
        computed from (see `FeaturePipeline.events_seen`), looked up now."""
        events_seen = self._features.events_seen
        if events_seen is None or self._features.log is None or self._log_sample <= 0:
            return None
        counts: dict[tuple[str, str, float], int | None] = {}
        for session, c in zip(sessions, cands, strict=True):
            if not sampled_entity(session.subject, self._log_sample):
                continue
            row = users.get(session.subject, {}).get(USER_PROFILE.name)
            wanted = [(USER, row)] + [(ITEM, items.get(i)) for i in c.item_ids]
            for kind, found in wanted:
                if found is not None:
                    key = (kind, found.entity_id, found.as_of)
                    counts[key] = events_seen(*key)
        return lambda kind, entity, as_of: counts.get((kind, entity, as_of))

    def _log_vectors(
        self,
        sessions: Sequence[SessionState],
        rows: Sequence[StoreRows],
        cands: Sequence[Candidates],
        matrices: Sequence[Matrix],
        ranked: Sequence[Ranked],
        now: float,
        seen: EventsSeen | None,
    ) -> None:
        """The `shopper_item` features of the top of each sampled shopper's list, with the
        times of the rows they were computed from, for `shopper features check-skew`."""
        features, rate = self._features, self._log_sample
        if features.log is None or rate <= 0:
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
                                       seen)  # fmt: skip
                logged.append(ServedRow(vector))
        if logged:
            try:
                features.log.append(logged)
                self.stats.vectors_logged += len(logged)
            except Exception:
                log.exception("feature vector log unwritable")


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
