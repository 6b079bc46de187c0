"""choose_list: what the page shows, and the fallbacks when the fresh list is gone."""

from __future__ import annotations

from shopper.domain.recommendation import PageRead, RecommendationList, Source, choose_list
from tests.unit.factories import popular, ranked


def page(
    fresh: RecommendationList | None = None,
    lkg: RecommendationList | None = None,
    popular_lists: tuple[RecommendationList, ...] = (),
    sold_out: frozenset[str] = frozenset(),
    similar: RecommendationList | None = None,
) -> PageRead:
    return PageRead(fresh, lkg, popular_lists, sold_out, similar)


def similar_to(item: str, *items: str | tuple[str, float]) -> RecommendationList:
    return ranked(*items, source=Source.SIMILAR, list_id=f"similar:{item}")


def test_the_item_on_the_page_drives_the_shoppers_list() -> None:
    own = ranked(("a", 1.0), ("b", 0.8), ("c", 0.6))
    shoe = similar_to("shoe-1", ("c", 1.0), ("s2", 0.9))
    chosen = choose_list(page(own, similar=shoe), k=4, exclude=["shoe-1"])
    assert chosen is not None
    # c is both the shopper's and like the page's item: it leads; s2 joins the list.
    assert chosen.item_ids() == ["c", "a", "s2", "b"]
    assert [s.score for s in chosen.items] == [0.8, 0.5, 0.45, 0.4]
    assert chosen.source is Source.PERSONALIZED and chosen.list_id == own.list_id


def test_a_shopper_without_a_list_gets_the_page_items_similar_list() -> None:
    shoe = similar_to("shoe-1", "s2", "s3", "s4")
    chosen = choose_list(
        page(similar=shoe, popular_lists=(popular("global", "g1"),), sold_out=frozenset({"s3"})),
        k=4,
    )
    assert chosen is not None
    assert chosen.item_ids() == ["s2", "s4", "g1"]  # sold-out s3 gone, topped up by popularity
    assert chosen.source is Source.SIMILAR


def test_fresh_list_wins_over_last_known_good_and_popularity() -> None:
    chosen = choose_list(
        page(ranked("a", "b", list_id="fresh"), ranked("c", list_id="old"), (popular("g", "p"),)),
        k=2,
    )
    assert chosen is not None
    assert chosen.item_ids() == ["a", "b"]
    assert chosen.source is Source.PERSONALIZED
    assert chosen.list_id == "fresh"


def test_last_known_good_is_served_when_no_fresh_list_and_says_so() -> None:
    chosen = choose_list(page(None, ranked("c", "d", list_id="old"), (popular("g", "p"),)), k=2)
    assert chosen is not None
    assert chosen.item_ids() == ["c", "d"]
    assert chosen.source is Source.LAST_KNOWN_GOOD
    assert chosen.list_id == "old"


def test_segment_popularity_comes_before_global_popularity() -> None:
    segment = popular("country:de", "s1", "s2")
    overall = popular("global", "g1", "g2")
    chosen = choose_list(page(popular_lists=(segment, overall)), k=2)
    assert chosen is not None
    assert chosen.item_ids() == ["s1", "s2"]
    assert chosen.source is Source.POPULAR
    assert chosen.list_id == "popular:country:de"


def test_global_popularity_when_the_segment_list_is_all_sold_out() -> None:
    segment = popular("country:de", "s1")
    overall = popular("global", "g1", "g2")
    chosen = choose_list(page(popular_lists=(segment, overall), sold_out=frozenset({"s1"})), k=2)
    assert chosen is not None
    assert chosen.item_ids() == ["g1", "g2"]
    assert chosen.list_id == "popular:global"


def test_a_fresh_list_emptied_by_stock_falls_back_to_popularity() -> None:
    chosen = choose_list(
        page(ranked("a"), None, (popular("global", "g1"),), sold_out=frozenset({"a"})), k=3
    )
    assert chosen is not None
    assert chosen.item_ids() == ["g1"]
    assert chosen.source is Source.POPULAR


def test_sold_out_items_are_dropped_from_every_tier() -> None:
    gone = frozenset({"b", "y", "q"})
    fresh = choose_list(page(ranked("a", "b", "c"), sold_out=gone), k=3)
    lkg = choose_list(page(None, ranked("x", "y", "z"), sold_out=gone), k=3)
    pop = choose_list(page(popular_lists=(popular("global", "p", "q", "r"),), sold_out=gone), k=3)
    assert fresh is not None and fresh.item_ids() == ["a", "c"]
    assert lkg is not None and lkg.item_ids() == ["x", "z"]
    assert pop is not None and pop.item_ids() == ["p", "r"]


def test_the_context_item_is_never_recommended_back() -> None:
    chosen = choose_list(
        page(ranked("a", "b"), popular_lists=(popular("global", "a", "p"),)), k=3, exclude=["a"]
    )
    assert chosen is not None
    assert chosen.item_ids() == ["b", "p"]


def test_short_list_is_topped_up_from_popularity_without_duplicates() -> None:
    fresh = ranked(("a", 0.9), ("b", 0.5))
    segment = popular("country:de", "b", "s1")
    overall = popular("global", "s1", "a", "g1", "g2")
    chosen = choose_list(page(fresh, None, (segment, overall)), k=5)
    assert chosen is not None
    assert chosen.item_ids() == ["a", "b", "s1", "g1", "g2"]
    # Top-ups were scored by popularity, not for this shopper: below every personal pick,
    # in popularity order, and never 0 (no list is padded with unscored items).
    assert [s.score for s in chosen.items] == [0.9, 0.5, 0.225, 0.2, 0.175]
    assert chosen.source is Source.PERSONALIZED


def test_top_up_skips_sold_out_and_excluded_popular_items() -> None:
    chosen = choose_list(
        page(ranked("a"), None, (popular("global", "x", "ctx", "g1"),), sold_out=frozenset({"x"})),
        k=3,
        exclude=["ctx"],
    )
    assert chosen is not None
    assert chosen.item_ids() == ["a", "g1"]


def test_list_is_cut_to_k() -> None:
    chosen = choose_list(page(ranked("a", "b", "c", "d")), k=2)
    assert chosen is not None
    assert chosen.item_ids() == ["a", "b"]


def test_empty_system_has_nothing_to_choose() -> None:
    assert choose_list(page(), k=10) is None


def test_empty_popular_lists_still_give_a_well_formed_empty_list() -> None:
    chosen = choose_list(page(popular_lists=(popular("global"),)), k=10)
    assert chosen is not None
    assert chosen.items == ()
    assert chosen.source is Source.POPULAR


def test_without_keeps_everything_but_the_items() -> None:
    original = ranked("a", "b", list_id="l")
    trimmed = original.without({"a"})
    assert trimmed.item_ids() == ["b"]
    assert (trimmed.list_id, trimmed.variant, trimmed.source, trimmed.generated_at) == (
        "l",
        original.variant,
        original.source,
        original.generated_at,
    )
    assert original.item_ids() == ["a", "b"]
