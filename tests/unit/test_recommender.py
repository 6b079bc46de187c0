"""Scoring one shopper with a trained model (`domain.recommender`): taste over popularity,
segments, no padding, what is never shown, new items, cold start and the ALS fold-in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import implicit.als
import numpy as np
import pytest
import scipy.sparse as sp

from shopper.domain.model import Blend, Popularity, RankingModel, Repurchase
from shopper.domain.recommender import (
    LiveInteraction,
    Profile,
    Ranked,
    build_profile,
    lead_of,
    recommend,
    young_items,
)
from shopper.domain.tier import Tier
from shopper.training.data import Interactions
from shopper.training.fit import FitSettings, fit
from tests.model_factories import (
    DAY,
    HOUR,
    PHONES,
    SHOE_TEXT,
    SHOES,
    T0,
    catalog_of,
    event,
    no_events,
    shop_data,
    two_taste_catalog,
    two_taste_shop,
)

pytestmark = pytest.mark.usefixtures("one_thread")


K = 10


@pytest.fixture(scope="module")
def model() -> RankingModel:
    return fit(two_taste_shop())


def ids(ranked: Ranked) -> list[str]:
    return [s.item_id for s in ranked.items]


def viewer(model: RankingModel, *items: str, **kwargs: Any) -> tuple[Profile, float]:
    """An unknown shopper who has just viewed `items`, and the time it is now."""
    now = model.trained_until + HOUR
    live = [LiveInteraction(item, 1.0, now - 60 * (n + 1)) for n, item in enumerate(items)]
    return build_profile(model, None, now, live=live, live_count=len(live), **kwargs), now


def anonymous(model: RankingModel, *segments: str) -> tuple[Profile, float]:
    now = model.trained_until + HOUR
    return build_profile(model, None, now, segments=segments), now


def listed(model: RankingModel, who: tuple[Profile, float], k: int = K, **kwargs: Any) -> list[str]:
    """The ids `recommend` lists for a (profile, now) pair."""
    profile, now = who
    return ids(recommend(model, profile, k, now, **kwargs))


def assert_not_padded(ranked: Ranked, k: int) -> None:
    assert len(ranked.items) <= k
    assert all(s.score > 0 for s in ranked.items)
    assert len(set(ids(ranked))) == len(ranked.items)


# --- taste beats popularity -------------------------------------------------------------


def test_an_anonymous_shopper_gets_global_popularity(model: RankingModel) -> None:
    profile, now = anonymous(model)
    ranked = recommend(model, profile, 5, now)

    by_popularity = np.argsort(-model.popularity.segments["global"], kind="stable")[:5]
    assert (ranked.tier, ranked.model) == (Tier.ANONYMOUS, "popularity")
    assert ids(ranked) == [model.item_ids[j] for j in by_popularity]
    assert set(ids(ranked)) == set(PHONES)


def test_a_segment_changes_what_an_anonymous_shopper_gets(model: RankingModel) -> None:
    everyone = listed(model, anonymous(model), 3)
    germany = listed(model, anonymous(model, "country:de"), 3)
    unknown_segment = listed(model, anonymous(model, "country:fr"), 3)

    assert everyone[0] == "phone-1"
    assert germany[0] == "shoe-1"
    assert unknown_segment == everyone


def test_a_known_shoe_shopper_gets_shoes_not_the_popular_phones(model: RankingModel) -> None:
    now = model.trained_until + HOUR
    # Browsing from the US, where phones are what everyone buys.
    profile = build_profile(model, "u:s03", now, segments=["country:us"])

    ranked = recommend(model, profile, 3, now)

    assert ranked.tier is Tier.FEW
    assert set(ids(ranked)) <= set(SHOES)
    assert len(ranked.items) == 3


@pytest.mark.parametrize("component", ["content", "ease", "itemknn", "als"])
def test_every_taste_model_answers_a_shoe_view_with_shoes(
    model: RankingModel, component: str
) -> None:
    profile, now = viewer(model, "shoe-2")

    ranked = recommend(model, profile, 3, now, blend=Blend({component: 1.0}))

    assert ids(ranked)
    assert set(ids(ranked)) <= set(SHOES)


def test_a_shopper_with_ten_plus_shoe_views_gets_collaborative_shoes(
    model: RankingModel,
) -> None:
    profile, now = viewer(model, *(SHOES * 3)[:12])

    ranked = recommend(model, profile, 5, now)

    assert (ranked.tier, ranked.model) == (Tier.MANY, "collaborative")
    assert set(ids(ranked)) == set(SHOES)


# --- no padding ------------------------------------------------------------------------


def test_fewer_than_k_rather_than_padding(model: RankingModel) -> None:
    profile, now = viewer(model, "shoe-2")

    ranked = recommend(model, profile, K, now, blend=Blend({"content": 1.0}))

    # Content knows only the four other shoes; the viewed shoe is not its own neighbour.
    assert ids(ranked) == ["shoe-1", "shoe-3", "shoe-4", "shoe-5"]  # ties in catalog order
    assert_not_padded(ranked, K)


@pytest.mark.parametrize("interactions", [0, 1, 3, 12])
def test_no_list_holds_an_item_scored_zero(model: RankingModel, interactions: int) -> None:
    profile, now = viewer(model, *(SHOES * 3)[:interactions])
    assert_not_padded(recommend(model, profile, K, now), K)


def test_a_score_too_small_to_show_is_left_out(model: RankingModel) -> None:
    popularity = np.zeros(model.n_items)
    popularity[model.index["phone-1"]] = 1.0
    popularity[model.index["phone-2"]] = 1e-9  # rounds to 0 relative to the top score
    tiny = replace(model, popularity=Popularity({"global": popularity}))

    assert listed(tiny, anonymous(tiny)) == ["phone-1"]


def test_nothing_left_to_show_gives_an_empty_list(model: RankingModel) -> None:
    profile, now = anonymous(model)
    assert recommend(model, profile, K, now, unavailable=model.item_ids).items == []


# --- what is never shown ----------------------------------------------------------------


def test_sold_out_items_never_appear(model: RankingModel) -> None:
    profile, now = anonymous(model)
    everything = ids(recommend(model, profile, K, now))

    ranked = recommend(model, profile, K, now, unavailable={"phone-1", "shoe-1", "gone"})

    assert ids(ranked) == [i for i in everything if i not in {"phone-1", "shoe-1"}]


def test_cart_items_never_appear(model: RankingModel) -> None:
    profile, now = anonymous(model)
    in_cart = build_profile(model, None, now, cart=["phone-1", "unknown-sku"])

    assert "phone-1" in ids(recommend(model, profile, K, now))
    assert "phone-1" not in ids(recommend(model, in_cart, K, now))


def test_exclude_never_shows_what_a_shopper_bought(model: RankingModel) -> None:
    now = model.trained_until + HOUR
    buyer = build_profile(model, "u:p00", now)  # bought phone-2 and phone-3 in training
    live_buyer = build_profile(
        model, None, now, live=[LiveInteraction("phone-4", 5.0, now - 60, purchase=True)]
    )
    popularity = Blend({"popularity": 1.0})

    assert "phone-2" in listed(model, anonymous(model))
    assert not {"phone-2", "phone-3"} & set(ids(recommend(model, buyer, K, now, blend=popularity)))
    assert "phone-4" not in ids(recommend(model, live_buyer, K, now, blend=popularity))


@pytest.fixture(scope="module")
def refill_model() -> RankingModel:
    """A consumables shop: `u:refill` bought shoe-4 five times."""
    refills = [event("u:refill", "shoe-4", T0 + n * DAY, "purchase") for n in range(5)]
    trained = fit(two_taste_shop(extra=refills), repurchase=Repurchase.ALLOW)
    return trained.with_blends({**trained.blends, Tier.FEW: Blend({"content": 1.0, "own": 1.0})})


def test_allow_brings_back_a_shoppers_own_repeat_purchase(refill_model: RankingModel) -> None:
    now = refill_model.trained_until + HOUR
    profile = build_profile(refill_model, "u:refill", now)

    ranked = recommend(refill_model, profile, K, now)
    content_alone = recommend(refill_model, profile, K, now, blend=Blend({"content": 1.0}))

    assert "shoe-4" in ids(ranked)
    assert "shoe-4" not in ids(content_alone)  # it is the `own` score that brings it back


def test_exclude_hides_the_same_repeat_purchase(refill_model: RankingModel) -> None:
    durable = replace(
        refill_model, settings=replace(refill_model.settings, repurchase=Repurchase.EXCLUDE)
    )
    now = durable.trained_until + HOUR
    profile = build_profile(durable, "u:refill", now)

    assert "shoe-4" not in ids(recommend(durable, profile, K, now))
    assert recommend(durable, profile, K, now, blend=Blend({"own": 1.0})).items == []


def test_items_viewed_this_session_are_hidden_unless_reshown(model: RankingModel) -> None:
    hidden, now = viewer(model, "shoe-1", "shoe-2", viewed=["shoe-2"])
    reshown, _ = viewer(model, "shoe-1", "shoe-2", viewed=["shoe-2"], reshow_viewed=True)
    content = Blend({"content": 1.0})

    assert "shoe-2" not in ids(recommend(model, hidden, K, now, blend=content))
    assert "shoe-2" in ids(recommend(model, reshown, K, now, blend=content))


# --- new items and cold start -----------------------------------------------------------


@pytest.fixture(scope="module")
def new_item_model() -> RankingModel:
    """`shoe-new` was listed two hours before the data ends and has no events yet;
    `phone-dusty` was listed long ago and never touched; shoe-1 was (re)listed an hour
    before the end but has behaviour."""
    shop = two_taste_shop()
    end = float(shop.events.ts.max())
    listed = [
        (item, text, end - HOUR if item == "shoe-1" else at)
        for item, text, at in two_taste_catalog().itertuples(index=False)
    ]
    listed += [
        ("shoe-new", f"lightweight {SHOE_TEXT}", end - 2 * HOUR),
        ("phone-dusty", "rugged smart phone cat_electronics", T0 - 400 * DAY),
    ]
    catalog = catalog_of(listed)
    return fit(Interactions(shop.events, catalog))


def test_young_items_are_new_listings_without_behaviour(new_item_model: RankingModel) -> None:
    now = new_item_model.trained_until + HOUR
    later = new_item_model.trained_until + (new_item_model.settings.new_item_hours + 1) * HOUR

    young = young_items(new_item_model, now)

    assert [new_item_model.item_ids[j] for j in np.flatnonzero(young)] == ["shoe-new"]
    assert not young_items(new_item_model, later).any()


@pytest.mark.parametrize("blend", [None, Blend({"ease": 1.0}), Blend({"als": 1.0})])
def test_a_young_item_reaches_a_shopper_who_likes_similar_items(
    new_item_model: RankingModel, blend: Blend | None
) -> None:
    profile, now = viewer(new_item_model, "shoe-2", "shoe-3")

    ranked = recommend(new_item_model, profile, K, now, blend=blend)

    assert "shoe-new" in ids(ranked)
    assert "phone-dusty" not in ids(ranked)
    assert_not_padded(ranked, K)


def test_a_young_item_is_not_shown_without_a_similar_interest(
    new_item_model: RankingModel,
) -> None:
    phones, now = viewer(new_item_model, "phone-2")
    assert "shoe-new" not in ids(recommend(new_item_model, phones, K, now))
    assert "shoe-new" not in listed(new_item_model, anonymous(new_item_model))


def test_a_catalog_without_events_still_recommends_by_content() -> None:
    cold = fit(Interactions(no_events(), two_taste_catalog()))
    profile, now = viewer(cold, "shoe-2")

    ranked = recommend(cold, profile, K, now)

    assert (cold.content.index >= 0).any(axis=1).all()
    assert not cold.has_behaviour.any()
    assert ranked.tier is Tier.FEW
    assert ids(ranked) and set(ids(ranked)) <= set(SHOES) - {"shoe-2"}
    assert listed(cold, anonymous(cold)) == []


# --- the ALS fold-in --------------------------------------------------------------------


def clustered_shop(clusters: int = 6, per_cluster: int = 20, shoppers: int = 180) -> Interactions:
    """Shoppers who each keep (90%) to one cluster of items, favouring its first ones."""
    rng = np.random.default_rng(7)
    items = [f"c{c}-{j:02d}" for c in range(clusters) for j in range(per_cluster)]
    favour = np.arange(per_cluster, 0, -1.0) / np.arange(per_cluster, 0, -1.0).sum()
    kinds = ["view", "add_to_cart", "purchase"]
    rows = []
    for u in range(shoppers):
        pool = items[(u % clusters) * per_cluster : (u % clusters + 1) * per_cluster]
        for _ in range(15):
            stray = rng.random() >= 0.9
            item = (
                items[rng.integers(len(items))]
                if stray
                else pool[rng.choice(per_cluster, p=favour)]
            )
            ts = T0 + rng.uniform(0, 20 * DAY)
            rows.append(event(f"u:{u:03d}", item, ts, kinds[rng.choice(3, p=[0.7, 0.2, 0.1])]))
    return shop_data(rows, catalog_of([(i, "", np.nan) for i in items]))


@pytest.fixture(scope="module")
def als_fit() -> tuple[RankingModel, Any, sp.csr_matrix]:
    """A model fitted with ALS alone, the implicit model the trainer fitted for it and the
    shopper x item strengths that model was fitted on."""
    built: list[Any] = []
    seen: list[sp.csr_matrix] = []
    original = implicit.als.AlternatingLeastSquares

    def recording(*args: Any, **kwargs: Any) -> Any:
        als = original(*args, **kwargs)
        fit_als = als.fit

        def fit_and_keep(user_items: sp.csr_matrix, *more: Any, **options: Any) -> Any:
            seen.append(user_items.copy())
            return fit_als(user_items, *more, **options)

        als.fit = fit_and_keep
        built.append(als)
        return als

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(implicit.als, "AlternatingLeastSquares", recording)
        trained = fit(clustered_shop(), FitSettings(als_iterations=10), only=frozenset({"als"}))
    (als,), (strengths,) = built, seen
    return trained, als, strengths


def test_fold_in_is_implicits_own_user_step(
    als_fit: tuple[RankingModel, Any, sp.csr_matrix],
) -> None:
    trained, als, strengths = als_fit
    assert trained.factors is not None
    for u in range(strengths.shape[0]):
        row = strengths[u]
        reference = np.asarray(als.recalculate_user(0, row), dtype=np.float64).ravel()
        folded = trained.factors.fold_in(row.indices, row.data.astype(np.float64))
        assert np.linalg.norm(folded - reference) <= 1e-4 * np.linalg.norm(reference)


def test_a_served_fold_in_ranks_like_the_trained_user_factors(
    als_fit: tuple[RankingModel, Any, sp.csr_matrix],
) -> None:
    trained, als, _ = als_fit
    assert trained.factors is not None
    overlaps, correlations = [], []
    for subject, u in trained.histories.subjects.items():
        # The shopper's own history, as serving sees it at the end of the training data.
        profile = build_profile(trained, subject, trained.trained_until)
        folded = trained.factors.scores(profile.items, profile.interest)
        reference = als.item_factors @ als.user_factors[u]
        top = set(np.argsort(-folded)[:10]) & set(np.argsort(-reference)[:10])
        overlaps.append(len(top) / 10)
        correlations.append(np.corrcoef(folded, reference)[0, 1])

    assert np.mean(overlaps) >= 0.95, f"mean top-10 overlap {np.mean(overlaps):.3f}"
    assert np.min(overlaps) >= 0.7, f"worst top-10 overlap {np.min(overlaps):.3f}"
    assert np.mean(correlations) >= 0.99, f"mean score correlation {np.mean(correlations):.4f}"


def test_fold_in_of_no_history_scores_nothing(model: RankingModel) -> None:
    assert model.factors is not None
    empty = np.array([], dtype=np.int32)
    assert not model.factors.scores(empty, np.array([])).any()


# --- the model a list is credited to -------------------------------------------------------


def test_a_list_is_credited_to_the_family_with_the_heaviest_weight() -> None:
    tuned = Blend({"content": 0.0, "popularity": 0.5, "als": 0.25})
    assert lead_of(Tier.FEW, tuned) == "popularity"
    assert lead_of(Tier.MANY, tuned) == "popularity"
    # EASE, item-kNN and ALS count together as collaborative filtering.
    both = Blend({"ease": 0.3, "als": 0.3, "content": 0.5})
    assert lead_of(Tier.FEW, both) == "collaborative"
    assert lead_of(Tier.FEW, Blend({"content": 0.1, "popularity": 4.0})) == "popularity"
    assert lead_of(Tier.FEW, Blend({"own": 1.0, "als": 0.5})) == "own_history"
    # A tie, or nothing weighed, goes to the tier's lead.
    assert lead_of(Tier.FEW, Blend({"content": 1.0, "ease": 1.0})) == "content"
    assert lead_of(Tier.MANY, Blend({})) == "collaborative"
