"""Ranking maths: decay, forward decay, cosine, and the session re-ranker."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from shopper.domain.ranking import (
    RankingParams,
    cosine,
    decay_factor,
    forward_weight,
    rerank_with_session,
    top_popular,
)
from shopper.domain.session import Interaction, SessionState

HOUR = 3600.0


def test_decay_halves_every_half_life() -> None:
    assert decay_factor(0.0, HOUR) == 1.0
    assert decay_factor(HOUR, HOUR) == pytest.approx(0.5)
    assert decay_factor(3 * HOUR, HOUR) == pytest.approx(0.125)


def test_decay_of_a_future_signal_is_capped_at_one() -> None:
    assert decay_factor(-HOUR, HOUR) == 1.0


def test_forward_weight_doubles_every_half_life_after_the_landmark() -> None:
    assert forward_weight(3.0, 1000.0, 1000.0, HOUR) == pytest.approx(3.0)
    assert forward_weight(3.0, 1000.0 + HOUR, 1000.0, HOUR) == pytest.approx(6.0)
    assert forward_weight(3.0, 1000.0 - HOUR, 1000.0, HOUR) == pytest.approx(1.5)


def test_forward_decayed_sums_rank_like_decayed_scores() -> None:
    landmark, now = 0.0, 10 * HOUR
    # "a": one old strong hit; "b": two recent weak hits.
    hits = {"a": [(4.0, 1 * HOUR)], "b": [(1.0, 8 * HOUR), (1.0, 9 * HOUR)]}
    forward = {i: sum(forward_weight(w, t, landmark, HOUR) for w, t in h) for i, h in hits.items()}
    decayed = {i: sum(w * decay_factor(now - t, HOUR) for w, t in h) for i, h in hits.items()}
    scale = forward["a"] / decayed["a"]
    assert forward["b"] / decayed["b"] == pytest.approx(scale)
    assert sorted(forward, key=forward.__getitem__) == sorted(decayed, key=decayed.__getitem__)


def test_cosine_normalises_by_both_volumes() -> None:
    assert cosine(2.0, 4.0, 1.0) == pytest.approx(1.0)
    assert cosine(1.0, 4.0, 9.0) == pytest.approx(1 / 6)
    assert cosine(1.0, 100.0, 1.0) < cosine(1.0, 1.0, 1.0)


@pytest.mark.parametrize(("count_a", "count_b"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 4.0)])
def test_cosine_of_an_item_without_volume_is_zero(count_a: float, count_b: float) -> None:
    assert cosine(1.0, count_a, count_b) == 0.0


def session(*recent: str, cart: Sequence[str] = (), purchased: Sequence[str] = ()) -> SessionState:
    """A session that viewed `recent` in order (last is most recent)."""
    return SessionState(
        subject="u:me",
        recent=[Interaction(item, 1.0, float(n)) for n, item in enumerate(recent)],
        cart={i: 1 for i in cart},
        purchased=list(purchased),
    )


def nothing_unavailable(candidates: Collection[str]) -> Collection[str]:
    return ()


def rerank(
    state: SessionState,
    edges: dict[str, list[tuple[str, float]]],
    popular: Sequence[tuple[str, float]] = (),
    unavailable: Collection[str] = (),
    k: int = 20,
) -> list[str]:
    ranked = rerank_with_session(
        state,
        lambda item: edges.get(item, []),
        popular,
        lambda candidates: [c for c in candidates if c in unavailable],
        RankingParams(k=k),
    )
    return [s.item_id for s in ranked]


def test_neighbours_of_recent_items_rank_above_unrelated_popular_items() -> None:
    edges = {"a": [("b", 0.3), ("c", 0.2)]}
    popular = [("hit1", 100.0), ("hit2", 90.0), ("c", 1.0)]
    assert rerank(session("a"), edges, popular)[:2] == ["b", "c"]
    assert set(rerank(session("a"), edges, popular)) >= {"hit1", "hit2"}


def test_without_a_session_popularity_orders_the_list() -> None:
    popular = [("p1", 10.0), ("p2", 5.0), ("p3", 1.0)]
    assert rerank(session(), {}, popular) == ["p1", "p2", "p3"]


def test_cart_purchased_and_unavailable_items_never_appear() -> None:
    edges = {"a": [("in_cart", 0.9), ("bought", 0.9), ("gone", 0.9), ("ok", 0.5)]}
    popular = [("in_cart", 50.0), ("bought", 40.0), ("gone", 30.0), ("pop", 20.0)]
    state = session("a", cart=["in_cart"], purchased=["bought"])
    out = rerank(state, edges, popular, unavailable={"gone"})
    assert not {"in_cart", "bought", "gone"} & set(out)
    assert out[0] == "ok"
    assert "pop" in out


def test_unavailable_is_asked_about_the_candidates() -> None:
    asked: list[set[str]] = []

    def unavailable(candidates: Collection[str]) -> Collection[str]:
        asked.append(set(candidates))
        return ()

    rerank_with_session(session("a"), lambda _: [("b", 1.0)], [("p", 1.0)], unavailable)
    assert asked == [{"b", "p"}]


def test_recent_items_count_more_than_older_ones() -> None:
    edges = {"old": [("from_old", 0.5)], "new": [("from_new", 0.5)]}
    assert rerank(session("old", "new"), edges)[:2] == ["from_new", "from_old"]
    assert rerank(session("new", "old"), edges)[:2] == ["from_old", "from_new"]


def test_stronger_interactions_count_more() -> None:
    state = SessionState(
        subject="u:me",
        recent=[Interaction("carted", 3.0, 1.0), Interaction("viewed", 1.0, 2.0)],
    )
    edges = {"carted": [("x", 0.5)], "viewed": [("y", 0.5)]}
    assert rerank(state, edges)[:2] == ["x", "y"]


def test_items_seen_this_session_are_pushed_down_not_hidden() -> None:
    edges = {"a": [("b", 1.0), ("c", 0.9)], "b": [("a", 1.0)]}
    out = rerank(session("a", "b"), edges)
    assert out.index("c") < out.index("b")
    assert "a" in out and "b" in out


def test_list_is_cut_to_k_and_scores_descend() -> None:
    popular = [(f"p{n}", float(100 - n)) for n in range(30)]
    ranked = rerank_with_session(
        session(), lambda _: [], popular, nothing_unavailable, RankingParams(k=5)
    )
    assert len(ranked) == 5
    scores = [s.score for s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_empty_session_and_no_popularity_give_an_empty_list() -> None:
    assert rerank(session(), {}) == []


def test_top_popular_scales_scores_drops_unavailable_and_cuts_to_k() -> None:
    ranked = top_popular([("a", 8.0), ("b", 4.0), ("c", 2.0), ("d", 1.0)], {"b"}, 2)
    assert [(s.item_id, s.score) for s in ranked] == [("a", 1.0), ("c", 0.25)]


def test_top_popular_of_nothing_is_empty() -> None:
    assert top_popular([], set(), 5) == []


def test_equal_scores_go_to_the_smaller_id() -> None:
    popular = [("p3", 1.0), ("p1", 1.0), ("p2", 1.0), ("top", 2.0)]
    assert rerank(session(), {}, popular) == ["top", "p1", "p2", "p3"]


@pytest.mark.parametrize("answer", [["b"], ("b",), {"b"}, frozenset({"b"})])
def test_unavailable_may_answer_with_any_collection(answer: Collection[str]) -> None:
    edges = {"a": [("b", 1.0), ("c", 0.5)]}
    ranked = rerank_with_session(session("a"), edges.__getitem__, [], lambda _: answer)
    assert [s.item_id for s in ranked] == ["c"]
