"""Experiment routing end to end in one process: the processor writes each shopper's list
under their assigned variant with that variant's model, shadows are written but never
served, the API stamps the assigned variant whichever list serves, and what sessions do
is attributed to their variant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopper.adapters.jsonl_list_log import JsonlListLog
from shopper.adapters.memory_flags import InMemoryFlagClient
from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.experiment import BASELINE, PROMOTED, Experiment, Variant
from shopper.ports.cache import ListKey
from shopper.services.processor import Processor
from shopper.services.serving import PageRequest
from shopper.training.fit import fit
from tests.model_factories import TINY_SETTINGS, interactions
from tests.unit.factories import drain, in_catalog, publish, wire

SPLIT = Experiment(
    (Variant("champion", PROMOTED, 50), Variant("challenger", BASELINE, 50)),
    (Variant("shadow", BASELINE, 0),),
)


@pytest.fixture
def flags() -> InMemoryFlagClient:
    return InMemoryFlagClient(SPLIT)


@pytest.fixture
def system(flags: InMemoryFlagClient, tmp_path: Path) -> Iterator[System]:
    store = InMemoryModelStore()
    model = fit(interactions(seed=1), TINY_SETTINGS, version="v1")
    store.save(model)
    store.promote("v1")
    config = load_config(
        {},
        data_dir=tmp_path,
        microbatch_wait_s=0,
        popular_refresh_s=0,
        model_poll_s=0.001,
        shadow_log_sample=1.0,
    )
    built = build_system(config, clock=ManualClock(), models=store, flags=flags)
    in_catalog(built.state)
    yield built
    built.close()


def run(system: System, processor: Processor, *raws: dict[str, Any]) -> None:
    publish(system.event_log, system.config.topic_prefix, *raws)
    drain(system, processor)


def shoppers_of(flags: InMemoryFlagClient, variant: str, n: int = 3) -> list[str]:
    found = [f"v{i}" for i in range(500) if flags.assign(f"s:v{i}").variant == variant]
    return found[:n]


def test_each_shopper_gets_their_variants_list_by_its_model_and_shadows_are_never_served(
    system: System, flags: InMemoryFlagClient, tmp_path: Path
) -> None:
    processor = system.processor()
    champions, challengers = shoppers_of(flags, "champion"), shoppers_of(flags, "challenger")
    for n, visitor in enumerate([*champions, *challengers]):
        run(system, processor, wire(f"e{n}", "view", session_id=visitor, item_id="sku-1"))

    for visitor, variant, by_baseline in [
        *((c, "champion", False) for c in champions),
        *((c, "challenger", True) for c in challengers),
    ]:
        page = system.cache.read_page(ListKey(f"s:{visitor}", variant), [])
        assert page.fresh is not None
        assert (page.fresh.model == BASELINE) is by_baseline  # the variant's own model
        assert page.fresh.variant == variant
        other = "challenger" if variant == "champion" else "champion"
        assert system.cache.read_page(ListKey(f"s:{visitor}", other), []).fresh is None
        shadow = system.cache.read_page(ListKey(f"s:{visitor}", "shadow"), []).fresh
        assert shadow is not None  # scored for everyone...
        served = system.reader.recommend(PageRequest(session_id=visitor))
        assert served.variant == variant and served.list_id == page.fresh.list_id
        assert served.list_id != shadow.list_id  # ...and never served
    assert processor.ranking.stats.shadow_lists == len(champions) + len(challengers)
    logged = JsonlListLog(tmp_path / "experiments" / "shadow-lists").read()
    assert {e["variant"] for e in logged} == {"shadow"}
    assert {e["subject"] for e in logged} == {f"s:{v}" for v in [*champions, *challengers]}


def test_a_variant_without_its_own_list_is_served_the_champions_under_its_own_name(
    system: System, flags: InMemoryFlagClient
) -> None:
    processor = system.processor()
    flags.set(Experiment((Variant("champion", PROMOTED, 100), Variant("challenger", BASELINE, 0))))
    visitor = shoppers_of(flags_with_split(), "challenger", 1)[0]
    run(system, processor, wire("e1", "view", session_id=visitor, item_id="sku-1"))
    flags.set(SPLIT)  # ramped: the challenger's list is not written yet

    served = system.reader.recommend(PageRequest(session_id=visitor))
    champions = system.cache.read_page(ListKey(f"s:{visitor}", "champion"), []).fresh
    assert champions is not None
    assert served.variant == "challenger"  # the exposure counts for the arm
    assert served.source == "champion" and served.list_id == champions.list_id


def flags_with_split() -> InMemoryFlagClient:
    return InMemoryFlagClient(SPLIT)


def test_sessions_are_attributed_to_the_variant_they_were_served(
    system: System, flags: InMemoryFlagClient
) -> None:
    processor = system.processor()
    (champion,) = shoppers_of(flags, "champion", 1)
    (challenger,) = shoppers_of(flags, "challenger", 1)
    for visitor in (champion, challenger):
        run(system, processor, wire(f"{visitor}-v", "view", session_id=visitor, item_id="sku-1"))
        served = system.reader.recommend(PageRequest(session_id=visitor))
        system.ingest.record_impression(None, visitor, served)
        system.ingest.record_impression(None, visitor, served)
    click = wire("c1", "click", session_id=challenger, item_id="sku-2", list_id="l1",
                 variant="challenger", position=0)  # fmt: skip
    cart = wire("a1", "add_to_cart", session_id=challenger, item_id="sku-2", quantity=1)
    buy = wire("p1", "purchase", session_id=challenger, item_id="sku-2", quantity=2, price=5.0)
    run(system, processor, click, cart, buy, buy)  # a redelivered purchase counts once

    report = {v["name"]: v for v in system.experiment_report()["variants"]}
    assert report["champion"]["sessions"] == 1 and report["challenger"]["sessions"] == 1
    assert report["champion"]["impressions"] == 2
    assert report["challenger"]["clicks"] == 1
    assert report["challenger"]["converted_sessions"] == 1
    assert report["challenger"]["revenue"] == 10.0
    assert report["champion"]["revenue"] == 0.0
    assert report["challenger"]["role"] == "challenger" and report["challenger"]["weight"] == 50
    # Re-ranked three times (two views, the challenger's batch), each list and its shadow:
    # the four impressions re-ranked nobody.
    assert processor.stats.lists_written == 3 * 2
