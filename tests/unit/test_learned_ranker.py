"""The learned ranker's training set: point-in-time features (nothing from after the
moment), labels from what the shopper went on to do, and a fit that learns from them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.domain.event import Event
from shopper.domain.features.pair import PAIR_FEATURES
from shopper.domain.learned import FEATURE_NAMES
from shopper.domain.recommender import similar_items, similarity
from shopper.services.feature_backfill import backfill_events
from shopper.training.learned_ranker import point_in_time, score_moments
from shopper.training.moments import BEFORE_S, Case
from tests.model_factories import ranking_model
from tests.unit.factories import T0, domain, wire

pytestmark = pytest.mark.usefixtures("one_thread")


def view(n: int, user: str, item: str, ts: float, type: str = "view") -> Event:
    return domain(wire(f"e{n}", type, user_id=user, session_id=f"{user}-visit", item_id=item,
                       ts=ts, price=10.0))  # fmt: skip


def test_training_rows_hold_nothing_from_after_the_moment() -> None:
    events = [
        view(1, "1", "a", T0),
        view(2, "1", "b", T0 + 10),
        view(3, "1", "c", T0 + 20, "add_to_cart"),  # what comes next: the label
        view(4, "2", "a", T0 + 20),  # someone else, at the same second
    ]
    store = InMemoryFeatureStore()
    backfill_events(events, store)

    at = T0 + 20 - BEFORE_S  # just before the next event, as `next_item_cases` takes it
    (rows,) = point_in_time(store, [("u:1", at)], [["a", "b", "c"]])

    assert rows.user["session_context"].values["recent_item_ids"] == ("b", "a")
    assert rows.user["session_context"].values["cart_item_ids"] == ()
    assert rows.user["user_profile"].values["interaction_count"] == 2
    assert rows.items["a"].values["views_1h"] == 1  # not the other shopper's later view
    assert "c" not in rows.items  # c has no event before the moment: no row at all
    assert all(r.as_of <= at for r in [*rows.user.values(), *rows.items.values()])


def test_no_training_row_of_a_random_shop_is_later_than_its_moment() -> None:
    rng = random.Random(3)
    events = [
        view(n, str(rng.randrange(8)), f"sku-{rng.randrange(12)}", T0 + rng.random() * 7200,
             rng.choice(["view", "view", "add_to_cart", "purchase"]))
        for n in range(400)
    ]  # fmt: skip
    store = InMemoryFeatureStore()
    backfill_events(events, store)
    moments = [(f"u:{rng.randrange(8)}", T0 + rng.random() * 7200) for _ in range(60)]
    items = [[f"sku-{i}" for i in range(12)]] * len(moments)

    for (_, at), rows in zip(moments, point_in_time(store, moments, items), strict=True):
        assert all(r.as_of <= at for r in [*rows.user.values(), *rows.items.values()])
        # Each row is the latest at or before the moment: no later event is in it.
        for item, row in rows.items.items():
            latest = max(e.ts for e in events if e.item_id == item and e.ts <= at)
            assert row.as_of == latest


def test_a_moment_gets_one_feature_row_per_candidate_in_the_ranker_columns() -> None:
    model = ranking_model("v1")
    subject = model.histories.subjects and next(iter(model.histories.subjects))
    ts = model.trained_until + 60
    events = [view(1, subject.removeprefix("u:"), model.item_ids[0], ts - 30)]
    store = InMemoryFeatureStore()
    backfill_events(events, store)
    case = Case(subject, ts, (), (), frozenset(), frozenset(model.item_ids[1:3]), ts - 1)

    scored = score_moments(model, [case], store, n=15)

    (matrix,) = scored.matrices
    (cands,) = scored.candidates
    assert matrix.shape == (len(cands.item_ids), len(FEATURE_NAMES)) and len(cands.item_ids) > 0
    session_items = matrix[:, FEATURE_NAMES.index("session_items")]
    assert set(session_items.tolist()) == {1.0}  # the one event before the moment
    # Items without a row before the moment are unknown (NaN), not zero.
    views = matrix[:, FEATURE_NAMES.index("item_views_1h")]
    assert all(math.isnan(v) for i, v in zip(cands.item_ids, views, strict=True)
               if i != model.item_ids[0])  # fmt: skip
    assert FEATURE_NAMES[-len(PAIR_FEATURES) :] == PAIR_FEATURES


def test_similarity_to_the_session_is_what_the_similar_lists_say() -> None:
    """The ranker's `sim_*` features read the similar lists' tables: for one source item,
    the candidates' similarity over its best is the similar list's relative score."""
    model = ranking_model("v1")
    for j in range(0, model.n_items, 7):
        listed = similar_items(model, model.item_ids[j], model.n_items)
        if not listed:
            continue
        candidates = np.array([model.index[s.item_id] for s in listed], dtype=np.int32)
        others = np.setdiff1d(np.arange(model.n_items, dtype=np.int32), [j, *candidates])
        sims = similarity(model, np.array([j], dtype=np.int32), np.r_[candidates, others])
        got = sims[0, : len(candidates)] / sims[0].max()
        assert got == pytest.approx([s.score for s in listed], abs=1e-6)
        assert not sims[0, len(candidates) :].any()  # not a neighbour: 0
        assert similarity(model, np.array([j], dtype=np.int32), np.array([j])).item() == 0
