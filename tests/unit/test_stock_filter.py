"""A sold-out item disappears from a stale cached list at read time, with no processor running."""

from __future__ import annotations

from shopper.domain.recommendation import DEFAULT_VARIANT
from shopper.ports.cache import ListKey
from tests.unit.api_harness import Api, ids
from tests.unit.factories import popular, ranked, sold_out, wire

ME = ListKey("u:me", DEFAULT_VARIANT)


def cache_stale_list(api: Api) -> None:
    """What the processor wrote before the sale: x first, and popularity to top up from."""
    api.system.cache.write_lists([(ME, ranked("x", "y", "z", list_id="mine"))])
    api.system.cache.write_popular("global", popular("global", "x", "p1", "p2"))


def test_a_sold_out_item_leaves_a_stale_list_at_once(api: Api) -> None:
    cache_stale_list(api)
    before = api.recommend(user_id="me", k=3)
    assert ids(before) == ["x", "y", "z"]
    assert before["source"] == "personalized"

    response = api.http.post("/v1/events", json=sold_out("sale-1", "x"))
    assert response.status_code == 202

    after = api.recommend(user_id="me", k=3)
    assert ids(after) == ["y", "z", "p1"]  # topped up from popularity
    assert after["source"] == "personalized"
    assert after["list_id"] == "mine"
    # The cached list is still the stale one: the filtering happened on the read.
    stale = api.system.cache.read_page(ME, []).fresh
    assert stale is not None and stale.item_ids() == ["x", "y", "z"]


def test_the_item_comes_back_when_restocked(api: Api) -> None:
    cache_stale_list(api)
    api.http.post("/v1/events", json=sold_out("sale-1", "x"))
    restock = wire("sale-2", "stock_change", item_id="x", quantity=5)
    assert api.http.post("/v1/events", json=restock).status_code == 202
    assert ids(api.recommend(user_id="me", k=3)) == ["x", "y", "z"]


def test_a_catalog_upsert_with_no_stock_hides_the_item_too(api: Api) -> None:
    cache_stale_list(api)
    response = api.http.put("/v1/catalog/items", json=[{"item_id": "y", "stock": 0}])
    assert response.status_code == 202
    assert ids(api.recommend(user_id="me", k=3)) == ["x", "z", "p1"]


def test_sold_out_items_leave_the_fallback_lists_too(api: Api) -> None:
    cache_stale_list(api)
    api.http.post("/v1/events", json=[sold_out("s1", "x"), sold_out("s2", "p1")])
    assert ids(api.recommend(user_id="stranger", k=3)) == ["p2"]
    assert ids(api.recommend(user_id="me", k=4)) == ["y", "z", "p2"]


def test_the_last_in_a_batch_wins(api: Api) -> None:
    cache_stale_list(api)
    restocked = wire("s2", "stock_change", item_id="x", quantity=1)
    api.http.post("/v1/events", json=[sold_out("s1", "x"), restocked])
    assert "x" in ids(api.recommend(user_id="me", k=3))
    api.http.post("/v1/events", json=[restocked | {"event_id": "s3"}, sold_out("s4", "x")])
    assert "x" not in ids(api.recommend(user_id="me", k=3))
