"""Only catalog items are recommended, while behaviour on the rest is still counted."""

from __future__ import annotations

from collections.abc import Iterable

from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.item import Item
from shopper.domain.recommendation import DEFAULT_VARIANT
from shopper.ports.cache import ListKey
from shopper.ports.processor_state import StateChanges
from shopper.services.catalog_filter import CatalogFilter
from shopper.training.fit import fit
from tests.model_factories import TINY_SETTINGS, interactions, two_taste_shop
from tests.model_factories import event as model_event
from tests.unit.factories import T0, drain, in_catalog, publish, wire


class CountingState(InMemoryProcessorState):
    def __init__(self) -> None:
        super().__init__(half_life_s=3600.0)
        self.asked: list[set[str]] = []

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        wanted = set(item_ids)
        self.asked.append(wanted)
        return super().items(wanted)


def hits(state: InMemoryProcessorState, counts: dict[str, int]) -> None:
    state.apply(
        StateChanges(hits=[("global", i, 1.0, T0) for i, n in counts.items() for _ in range(n)])
    )


def listed(state: InMemoryProcessorState, *items: str) -> None:
    state.apply(StateChanges(items={i: Item(i) for i in items}))


def test_unknown_items_are_left_out_and_known_ones_remembered() -> None:
    state = CountingState()
    listed(state, "a", "b")
    catalog = CatalogFilter(state)
    assert catalog.unknown_among(["a", "b", "<img src=x>"]) == {"<img src=x>"}
    assert catalog.unknown_among(["a", "b", "<img src=x>"]) == {"<img src=x>"}
    assert state.asked == [{"a", "b", "<img src=x>"}, {"<img src=x>"}]  # known: not asked again


def test_a_popular_list_reads_past_unknown_items_crowding_the_top() -> None:
    state = InMemoryProcessorState(half_life_s=3600.0)
    listed(state, "a", "b", "c")
    hits(state, {f"junk-{n}": 100 for n in range(30)} | {"a": 3, "b": 2, "c": 1})
    assert [i for i, _ in CatalogFilter(state).popular("global", 3)] == ["a", "b", "c"]


def test_an_item_counts_as_soon_as_the_catalog_lists_it() -> None:
    state = InMemoryProcessorState(half_life_s=3600.0)
    listed(state, "a")
    hits(state, {"new": 5, "a": 1})
    catalog = CatalogFilter(state)
    assert [i for i, _ in catalog.popular("global", 5)] == ["a"]
    listed(state, "new")
    assert [i for i, _ in catalog.popular("global", 5)] == ["new", "a"]


def test_similar_lists_hold_catalog_items_only() -> None:
    store = InMemoryModelStore()
    model = fit(interactions(), TINY_SETTINGS, version="v1")
    store.save(model)
    store.promote(model.version)
    config = load_config({}, microbatch_wait_s=0, popular_refresh_s=0, model_poll_s=0.001)
    system = build_system(config, clock=ManualClock(), models=store)
    try:
        listed_items = [i for i in model.item_ids if i != "sku-5"]
        in_catalog(system.state, *listed_items)
        processor = system.processor()
        processor.run_once()  # a new model: its similar lists are written
        processor.close()
        lists = {i: system.cache.read_similar(i)[0] for i in model.item_ids}
        assert lists["sku-5"] is None
        shown = {s for rec in lists.values() if rec is not None for s in rec.item_ids()}
        assert shown and "sku-5" not in shown
        assert all(lists[i] is not None for i in listed_items)
    finally:
        system.close()


def shop_with_model(store: InMemoryModelStore, *listed: str) -> System:
    config = load_config({}, microbatch_wait_s=0, popular_refresh_s=0, model_poll_s=0.001)
    system = build_system(config, clock=ManualClock(), models=store)
    in_catalog(system.state, *listed)
    return system


def list_after_a_view(system: System) -> list[str]:
    processor = system.processor()
    publish(
        system.event_log, system.config.topic_prefix, wire("c-1", session_id="c", item_id="sku-1")
    )
    drain(system, processor)
    processor.close()
    got = system.cache.read_page(ListKey("s:c", DEFAULT_VARIANT), []).fresh
    assert got is not None and got.items
    return got.item_ids()


def test_a_models_lists_hold_catalog_items_only() -> None:
    store = InMemoryModelStore()
    model = fit(interactions(), TINY_SETTINGS, version="v1")
    store.save(model)
    store.promote(model.version)
    whole = shop_with_model(store, *model.item_ids)
    try:
        full = list_after_a_view(whole)
    finally:
        whole.close()
    top = full[0]
    # The same shop, with the model's top item for this shopper not in its catalog.
    short = shop_with_model(store, *(i for i in model.item_ids if i != top))
    try:
        got = list_after_a_view(short)
        assert top not in got
        assert got[: len(full) - 1] == full[1:]
    finally:
        short.close()


def test_only_the_trained_segments_a_page_can_ask_for_get_popular_lists() -> None:
    # Three made-up countries, with the events the trainer needs to count one (20 each).
    made_up = [model_event(f"u:m{n}", "shoe-1", T0 + n, country=f"zz{n % 3}") for n in range(60)]
    shop = two_taste_shop(extra=made_up)
    store = InMemoryModelStore()
    model = fit(shop, TINY_SETTINGS, version="v1")
    store.save(model)
    store.promote(model.version)
    assert "country:zz1" in model.popularity.segments  # the trainer counts every value
    system = shop_with_model(store, *model.item_ids)
    try:
        processor = system.processor()
        processor.run_once()  # a new model: a popular list per trained segment
        processor.close()
        assert sorted(processor.ranking.trained_segments()) == ["country:de", "country:us"]
        assert system.cache.read_page(None, ["country:de"]).popular
        assert not system.cache.read_page(None, ["country:zz1"]).popular
    finally:
        system.close()


def test_a_bounded_memory_of_known_items_only_costs_reads() -> None:
    state = CountingState()
    listed(state, "a", "b", "c")
    catalog = CatalogFilter(state, remembered=2)
    assert catalog.unknown_among(["a", "b", "c", "x"]) == {"x"}
    assert catalog.unknown_among(["a", "b", "c", "x"]) == {"x"}
    assert len(state.asked[1]) == 2  # one of a, b, c forgotten (and x): asked again
