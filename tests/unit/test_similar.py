"""Similar items for product pages: scored from the trained model's item-item neighbours,
written by the processor when a model is loaded, served from the cache with live stock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx
import numpy as np
import pandas as pd
import pytest

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.model import RankingModel
from shopper.domain.recommendation import RecommendationList, Source
from shopper.domain.recommender import similar_items, similar_rows
from shopper.services.serving import RecommendationReader
from shopper.training.fit import fit
from tests.helpers import keyed
from tests.model_factories import (
    PHONES,
    SHOE_TEXT,
    SHOES,
    T0,
    TINY_SETTINGS,
    catalog_of,
    interactions,
    two_taste_catalog,
    two_taste_shop,
)
from tests.unit.api_harness import MAX_K, SwitchableApp, ids
from tests.unit.factories import in_catalog, sold_out

# --- Scoring (domain) --------------------------------------------------------------------

NEW_SHOE = "shoe-new"  # listed, no events: content is all it has


@pytest.fixture(scope="module")
def model() -> RankingModel:
    new = catalog_of([(NEW_SHOE, f"hiking {SHOE_TEXT}", T0)])
    catalog = pd.concat([two_taste_catalog(), new], ignore_index=True)
    return fit(two_taste_shop(catalog=catalog), TINY_SETTINGS)


@pytest.mark.parametrize("item", [*SHOES, *PHONES])
def test_an_items_similar_items_are_from_its_own_cluster(model: RankingModel, item: str) -> None:
    cluster = {*SHOES, NEW_SHOE} if item in SHOES else set(PHONES)
    got = similar_items(model, item, 10)
    assert got, f"{item} has similar items"
    assert set(s.item_id for s in got) <= cluster - {item}
    assert all(s.score > 0 for s in got)
    assert got[0].score == 1.0  # relative to the best
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)


def test_behaviour_and_content_both_count(model: RankingModel) -> None:
    got = [s.item_id for s in similar_items(model, SHOES[0], 10)]
    assert set(SHOES[1:]) <= set(got)  # co-viewed and same words
    assert NEW_SHOE in got  # same words only, ranked below the co-viewed ones
    assert got.index(NEW_SHOE) == len(got) - 1


def test_a_new_item_without_behaviour_gets_its_content_neighbours(model: RankingModel) -> None:
    got = similar_items(model, NEW_SHOE, 10)
    assert got and {s.item_id for s in got} <= set(SHOES)


def test_k_cuts_and_an_unknown_item_has_none(model: RankingModel) -> None:
    assert len(similar_items(model, SHOES[0], 2)) == 2
    assert similar_items(model, "no-such-item", 10) == []


def test_a_batch_of_items_scores_each_as_alone(model: RankingModel) -> None:
    batch = similar_rows(model, np.arange(model.n_items, dtype=np.int32), 3)
    assert batch == [similar_items(model, item, 3) for item in model.item_ids]


# --- Written by the processor, served by the API ------------------------------------------


class DownCache(InMemoryRecommendationCache):
    def read_similar(self, item_id: str) -> tuple[RecommendationList | None, frozenset[str]]:
        raise ConnectionError("connection refused")


def test_the_reader_answers_an_empty_similar_list_when_the_cache_is_down() -> None:
    clock = ManualClock()
    answer = RecommendationReader(DownCache(clock, 60, 600), clock).similar("sku-1", 5)
    assert (answer.items, answer.source) == ((), Source.SIMILAR)


@pytest.fixture
def store() -> InMemoryModelStore:
    return InMemoryModelStore()


@pytest.fixture
def system(store: InMemoryModelStore) -> Iterator[System]:
    config = load_config(
        {}, max_k=MAX_K, microbatch_wait_s=0, popular_refresh_s=0, model_poll_s=0.001
    )
    built = build_system(config, clock=ManualClock(), models=store)
    in_catalog(built.state)
    yield built
    built.close()


@pytest.fixture
def http(server: tuple[SwitchableApp, str], system: System) -> Iterator[httpx.Client]:
    switch, url = server
    switch.target = system.app()
    with httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as client:
        yield client
    switch.target = None


def similar_of(http: httpx.Client, item: str, **params: int) -> dict[str, object]:
    response = http.get(f"/v1/items/{item}/similar", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def promote_and_process(system: System, store: InMemoryModelStore) -> Sequence[str]:
    model = fit(interactions(), TINY_SETTINGS, version="v1")
    store.save(model)
    store.promote(model.version)
    processor = system.processor()  # loads the promoted model
    processor.run_once()  # a new model: its similar lists are written
    processor.close()
    return model.item_ids


def test_no_model_no_similar_lists(system: System, http: httpx.Client) -> None:
    processor = system.processor()
    assert processor.ranking.similar_lists(10) == []
    processor.run_once()
    processor.close()
    body = similar_of(http, "sku-1")
    assert (body["items"], body["source"]) == ([], "similar")


def test_a_product_page_gets_similar_items_and_never_a_sold_out_one(
    system: System, store: InMemoryModelStore, http: httpx.Client
) -> None:
    promote_and_process(system, store)
    body = similar_of(http, "sku-1")
    shown = ids(body)
    assert shown and "sku-1" not in shown
    coats = {f"sku-{i}" for i in range(1, 24, 4)}  # sku-1's category (tests.model_factories)
    assert set(shown[:3]) <= coats
    assert (body["source"], body["list_id"], body["model"]) == (
        "similar",
        "similar:sku-1",
        "similar",
    )

    # The API applies the sale to the stock set as it accepts it: no processor runs.
    gone = shown[0]
    assert http.post("/v1/events", json=sold_out("out-1", gone)).status_code == 202
    after = ids(similar_of(http, "sku-1"))
    assert gone not in after
    assert after[: len(shown) - 1] == shown[1:]


def test_k_bounds_and_items_the_model_does_not_know(
    system: System, store: InMemoryModelStore, http: httpx.Client
) -> None:
    promote_and_process(system, store)
    assert len(ids(similar_of(http, "sku-1", k=2))) == 2
    for k in (0, MAX_K + 1):
        response = http.get("/v1/items/sku-1/similar", params={"k": k})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "k"]
    for unknown in ("no-such-item", "a%2Fb"):  # an id with a slash still reaches the route
        body = similar_of(http, unknown)
        assert (body["items"], body["source"]) == ([], "similar")


def test_openapi_documents_the_similar_route(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    route = doc["paths"]["/v1/items/{item_id}/similar"]["get"]
    assert "never an error" in route["responses"]["200"]["description"]
    assert {p["name"] for p in route["parameters"]} == {"item_id", "k"}


def test_a_product_page_without_a_shopper_list_shows_items_like_it(
    system: System, store: InMemoryModelStore, http: httpx.Client
) -> None:
    promote_and_process(system, store)
    like_it = ids(similar_of(http, "sku-1"))
    params = {"session_id": "newcomer", "context_item": "sku-1", "k": 5}
    body = http.get("/v1/recommendations", params=params).json()
    assert body["source"] == "similar"
    assert ids(body) == like_it[:5]
    assert "sku-1" not in ids(body)
