"""The processor's ranking stage with trained models: hot swaps, tiers as events arrive,
filters, and a shop whose catalog has no events yet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.model import RankingModel
from shopper.domain.recommendation import DEFAULT_VARIANT, RecommendationList
from shopper.domain.segment import GLOBAL_SEGMENT
from shopper.ports.cache import ListKey
from shopper.services.processor import Processor
from shopper.training.fit import fit
from tests.model_factories import TINY_SETTINGS, interactions, no_events, shop_data
from tests.unit.factories import drain, in_catalog, publish, sold_out, wire


@pytest.fixture
def store() -> InMemoryModelStore:
    return InMemoryModelStore()


def make_system(store: InMemoryModelStore, **settings: Any) -> System:
    config = load_config(
        {}, microbatch_wait_s=0, popular_refresh_s=0, model_poll_s=0.001, **settings
    )
    system = build_system(config, clock=ManualClock(), models=store)
    in_catalog(system.state)
    return system


@pytest.fixture
def system(store: InMemoryModelStore) -> Iterator[System]:
    built = make_system(store)
    yield built
    built.close()


def trained(version: str = "v1", seed: int = 1) -> RankingModel:
    return fit(interactions(seed=seed), TINY_SETTINGS, version=version)


def serve(store: InMemoryModelStore, model: RankingModel) -> None:
    store.save(model)
    store.promote(model.version)


def views(subject_session: str, *items: str, start: int = 0) -> list[dict[str, Any]]:
    return [
        wire(f"{subject_session}-{start + n}", "view", session_id=subject_session, item_id=item)
        for n, item in enumerate(items)
    ]


def run(system: System, processor: Processor, *raws: dict[str, Any]) -> None:
    publish(system.event_log, system.config.topic_prefix, *raws)
    drain(system, processor)


def fresh(system: System, subject: str) -> RecommendationList:
    got = system.cache.read_page(ListKey(subject, DEFAULT_VARIANT), []).fresh
    assert got is not None, f"no list for {subject}"
    return got


def test_baseline_until_a_model_is_promoted_then_each_new_promotion_without_restart(
    system: System, store: InMemoryModelStore
) -> None:
    processor = system.processor()
    run(system, processor, *views("a", "sku-1", "sku-5"))
    assert fresh(system, "s:a").model == "baseline"

    serve(store, trained("v1"))
    run(system, processor, *views("a", "sku-9", start=2))
    first = fresh(system, "s:a")
    assert first.model in ("content", "collaborative", "popularity")
    assert first.tier == "1-9"
    assert processor.ranking.stats.model_version == "v1"

    serve(store, trained("v2", seed=2))
    run(system, processor, *views("a", "sku-13", start=3))
    assert processor.ranking.stats.model_version == "v2"
    assert processor.ranking.stats.models["baseline"] == 1
    assert sum(processor.ranking.stats.models.values()) == 3


def test_the_tier_moves_as_an_anonymous_visitor_browses(
    system: System, store: InMemoryModelStore
) -> None:
    serve(store, trained())
    processor = system.processor()
    run(system, processor, *views("b", "sku-1"))
    assert (fresh(system, "s:b").tier, fresh(system, "s:b").model) == ("1-9", "content")
    run(system, processor, *views("b", *[f"sku-{i}" for i in range(2, 11)], start=1))
    assert (fresh(system, "s:b").tier, fresh(system, "s:b").model) == ("10+", "collaborative")
    assert processor.ranking.stats.tiers == {"1-9": 1, "10+": 1}


def test_model_lists_hide_sold_out_viewed_and_zero_score_items(
    system: System, store: InMemoryModelStore
) -> None:
    serve(store, trained())
    processor = system.processor()
    run(system, processor, *views("c", "sku-1", "sku-5"))
    before = fresh(system, "s:c")
    assert before.items, "a shopper with two views gets a list"
    assert {"sku-1", "sku-5"}.isdisjoint(before.item_ids())
    assert all(s.score > 0 for s in before.items)
    gone = before.items[0].item_id
    run(system, processor, sold_out("out-1", gone), *views("c", "sku-9", start=2))
    after = fresh(system, "s:c")
    assert gone not in after.item_ids()
    assert "sku-9" not in after.item_ids()


def test_viewed_items_come_back_when_the_shop_asks(store: InMemoryModelStore) -> None:
    serve(store, trained())
    system = make_system(store, reshow_viewed=True)
    try:
        processor = system.processor()
        run(system, processor, *views("d", "sku-1", "sku-5", "sku-9", "sku-13"))
        viewed = {"sku-1", "sku-5", "sku-9", "sku-13"}
        assert viewed & set(fresh(system, "s:d").item_ids())
    finally:
        system.close()


def test_a_catalog_with_no_events_gets_popular_and_content_lists(
    system: System, store: InMemoryModelStore
) -> None:
    catalog = interactions().catalog
    serve(store, fit(shop_data([], catalog).__class__(no_events(), catalog), TINY_SETTINGS))
    processor = system.processor()
    processor.run_once()  # the first refresh writes the popular lists
    popular = system.cache.read_page(None, [GLOBAL_SEGMENT]).popular
    assert popular and popular[0].items, "a shop with items never answers an empty list"
    run(system, processor, *views("e", "sku-2"))
    assert fresh(system, "s:e").items
    assert fresh(system, "s:e").model == "content"


def test_signing_in_joins_the_sessions_history_and_cart_to_the_user(
    system: System, store: InMemoryModelStore
) -> None:
    serve(store, trained())
    processor = system.processor()
    cart = wire("f-cart", "add_to_cart", session_id="f", item_id="sku-2")
    run(system, processor, *views("f", "sku-1", "sku-5", "sku-9"), cart)
    signed_in = wire("f-in", "view", user_id="shopper-f", session_id="f", item_id="sku-13")
    run(system, processor, signed_in)
    user = system.state.sessions(["u:shopper-f"])["u:shopper-f"]
    assert user.interactions == 5
    assert user.cart == {"sku-2": 1}
    assert [i.item_id for i in user.recent] == ["sku-1", "sku-5", "sku-9", "sku-2", "sku-13"]
    assert fresh(system, "u:shopper-f").tier == "1-9"
    assert "sku-2" not in fresh(system, "u:shopper-f").item_ids()  # in the cart
    # Redelivered or repeated, the join counts nothing twice.
    again = wire("f-in-2", "view", user_id="shopper-f", session_id="f", item_id="sku-17")
    run(system, processor, again)
    assert system.state.sessions(["u:shopper-f"])["u:shopper-f"].interactions == 6


def test_a_live_spike_lifts_a_trending_item_into_other_shoppers_lists(
    system: System, store: InMemoryModelStore
) -> None:
    serve(store, trained())
    processor = system.processor()
    shoes = [f"sku-{i}" for i in range(0, 20, 4)]  # one category; sku-1 is another
    run(system, processor, *views("g", *shoes))

    def rank_of_spiked() -> int:
        ids = fresh(system, "s:g").item_ids()
        return ids.index("sku-1") if "sku-1" in ids else len(ids)

    before = rank_of_spiked()
    spike = [wire(f"spike-{n}", "view", session_id=f"x{n}", item_id="sku-1") for n in range(60)]
    run(system, processor, *spike)
    run(system, processor, *views("g", "sku-0", start=10))
    assert processor.ranking.stats.trending >= 1
    assert rank_of_spiked() < before
    assert rank_of_spiked() < 3


def test_a_price_drop_lifts_an_item_the_shopper_would_see_anyway(
    system: System, store: InMemoryModelStore
) -> None:
    serve(store, trained())
    processor = system.processor()
    run(system, processor, *views("h", "sku-0", "sku-4"))
    target = fresh(system, "s:h").item_ids()[4]
    price = {"type": "price_change", "item_id": target}

    def after(event_id: str, new_price: float) -> list[str]:
        # A search re-ranks the shopper without changing what they showed interest in.
        seen = wire(f"{event_id}-seen", "search", session_id="h", query="lamp")
        run(system, processor, wire(event_id, price=new_price, **price), seen)
        return fresh(system, "s:h").item_ids()

    at_full_price = after("p-0", 100.0)
    on_sale = after("p-1", 50.0)
    assert on_sale.index(target) < at_full_price.index(target)
    assert sorted(on_sale) == sorted(at_full_price)  # lifted within the list, nothing added
    assert after("p-2", 100.0) == at_full_price  # back to its price, the lift is gone
