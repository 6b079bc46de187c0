"""The HTTP API over a real server: 202 or 4xx with reasons, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from shopper.domain.event import EventType
from tests.unit.api_harness import MAX_BATCH, MAX_K, Api, ids
from tests.unit.factories import popular, sold_out, view, wire


def test_one_event_is_accepted(api: Api) -> None:
    response = api.http.post("/v1/events", json=view("e1", "me", "a"))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": []}
    assert api.published() == 1


def test_a_batch_is_accepted(api: Api) -> None:
    batch = [view("e1", "me", "a"), view("e2", "me", "b"), sold_out("e3", "c")]
    response = api.http.post("/v1/events", json=batch)
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "rejected": []}
    assert api.published() == 3


def test_bad_events_are_listed_while_the_good_ones_go_in(api: Api) -> None:
    batch = [
        view("ok-1", "me", "a"),
        view("bad-type", "me", "a") | {"position": "third", "ts": "yesterday"},
        {"type": "view", "user_id": "me", "item_id": "a"},
        view("bad-kind", "me", "a") | {"type": "teleport"},
        sold_out("ok-2", "gone"),
    ]
    api.system.cache.write_popular("global", popular("global", "gone", "p"))
    response = api.http.post("/v1/events", json=batch)

    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == 2
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3]
    assert rejected[1]["event_id"] == "bad-type"
    assert {r.split(":")[0] for r in rejected[1]["reasons"]} == {"position", "ts"}
    assert rejected[2]["event_id"] is None
    assert {r.split(":")[0] for r in rejected[2]["reasons"]} == {"event_id", "ts"}
    assert rejected[3]["event_id"] == "bad-kind"
    assert [r.split(":")[0] for r in rejected[3]["reasons"]] == ["type"]

    # The good ones took effect: the sale at once, the view once processed.
    assert ids(api.recommend(user_id="me")) == ["p"]
    api.process()
    after = api.recommend(user_id="me")
    assert after["source"] == "personalized"
    assert api.published() == 2


def test_an_oversize_batch_is_refused_whole(api: Api) -> None:
    batch = [view(f"e{n}", "me", "a") for n in range(MAX_BATCH + 1)]
    response = api.http.post("/v1/events", json=batch)
    assert response.status_code == 413
    assert f"over the limit of {MAX_BATCH}" in response.json()["detail"]
    assert api.published() == 0


def test_a_full_batch_is_not_oversize(api: Api) -> None:
    batch = [view(f"e{n}", "me", "a") for n in range(MAX_BATCH)]
    assert api.http.post("/v1/events", json=batch).status_code == 202


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"event_id": "e1",', b"[" * 100_000],
    ids=["broken", "empty", "not-utf8", "truncated", "nested-too-deep"],
)
def test_a_body_that_is_no_json_is_a_400_with_a_reason(api: Api, body: bytes) -> None:
    response = api.http.post(
        "/v1/events", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    assert api.published() == 0


@pytest.mark.parametrize(
    ("body", "rejected"),
    [
        (5, [0]),
        ("view", [0]),
        (None, [0]),
        ({}, [0]),
        ([1, "a", None, []], [0, 1, 2, 3]),
        ([[view("e1", "me", "a")]], [0]),
    ],
    ids=["number", "string", "null", "empty-object", "list-of-scalars", "nested-list"],
)
def test_json_that_is_no_event_is_a_422_per_entry(api: Api, body: Any, rejected: list[int]) -> None:
    response = api.http.post("/v1/events", content=json.dumps(body))
    assert response.status_code == 422
    out = response.json()
    assert out["accepted"] == 0
    assert [r["index"] for r in out["rejected"]] == rejected
    assert all(r["reasons"] for r in out["rejected"])


def test_an_empty_batch_accepts_nothing(api: Api) -> None:
    response = api.http.post("/v1/events", json=[])
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "rejected": []}


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
def test_numbers_that_are_not_finite_are_refused(api: Api, number: str) -> None:
    raw = json.dumps(wire("e1", "price_change", item_id="a", price=1.0))
    response = api.http.post("/v1/events", content=raw.replace("1.0", number))
    assert response.status_code == 422
    assert response.json()["rejected"][0]["reasons"][0].startswith("price:")
    assert api.published() == 0


def test_catalog_items_are_upserted_in_bulk(api: Api) -> None:
    items = [
        {"item_id": "a", "title": "Mug", "category": "Home > Kitchen", "price": 4.5, "stock": 3},
        {"item_id": 17, "title": "Lamp", "brand": "Lux", "attributes": {"colour": "red"}},
    ]
    response = api.http.put("/v1/catalog/items", json=items)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "rejected": []}
    api.process()
    stored = api.system.state.items(["a", "17"])
    assert stored["a"].category == ("Home", "Kitchen")
    assert (stored["a"].price, stored["a"].stock) == (4.5, 3)
    assert stored["17"].attributes == {"colour": "red"}


def test_a_bad_catalog_item_is_listed_and_the_rest_upserted(api: Api) -> None:
    items = [{"item_id": "a"}, {"title": "no id"}, {"item_id": "b", "colour": "red"}, 5]
    response = api.http.put("/v1/catalog/items", json=items)
    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert any("item.item_id" in r for r in body["rejected"][0]["reasons"])
    assert any("item.colour" in r for r in body["rejected"][1]["reasons"])


def test_every_catalog_upsert_counts_not_just_the_first(api: Api) -> None:
    put = api.http.put
    assert put("/v1/catalog/items", json=[{"item_id": "a", "stock": 0}]).status_code == 202
    api.process()
    assert api.system.state.items(["a"])["a"].stock == 0
    assert put("/v1/catalog/items", json=[{"item_id": "a", "stock": 5}]).status_code == 202
    api.process()
    assert api.system.state.items(["a"])["a"].stock == 5


def test_unknown_user_on_an_empty_system_gets_a_well_formed_list(api: Api) -> None:
    body = api.recommend(user_id="stranger")
    assert body["items"] == []
    assert body["source"] == "popular"
    assert body["variant"] == "champion"
    assert isinstance(body["list_id"], str)
    assert datetime.fromisoformat(body["generated_at"]).tzinfo is not None


def test_nobody_at_all_gets_a_well_formed_list(api: Api) -> None:
    api.system.cache.write_popular("global", popular("global", "p1", "p2"))
    body = api.recommend()
    assert ids(body) == ["p1", "p2"]
    assert body["source"] == "popular"


@pytest.mark.parametrize("k", ["0", "-1", str(MAX_K + 1), "ten"])
def test_k_out_of_bounds_is_a_422(api: Api, k: str) -> None:
    response = api.http.get("/v1/recommendations", params={"user_id": "me", "k": k})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "k"]


def test_k_limits_the_list_and_defaults_from_config(api: Api) -> None:
    items = [f"p{n}" for n in range(MAX_K + 5)]
    api.system.cache.write_popular("global", popular("global", *items))
    assert ids(api.recommend(k=3)) == ["p0", "p1", "p2"]
    assert len(api.recommend(k=MAX_K)["items"]) == MAX_K
    assert len(api.recommend()["items"]) == api.system.config.default_k


def test_the_segment_popularity_of_the_shopper_is_served(api: Api) -> None:
    api.system.cache.write_popular("global", popular("global", "g1"))
    api.system.cache.write_popular("country:de", popular("country:de", "d1"))
    assert ids(api.recommend(country="DE", k=2)) == ["d1", "g1"]
    assert ids(api.recommend(country="FR", k=2)) == ["g1"]


def test_the_context_item_is_not_recommended_back(api: Api) -> None:
    api.system.cache.write_popular("global", popular("global", "a", "b", "c"))
    assert ids(api.recommend(context_item="b")) == ["a", "c"]


def test_every_list_served_to_a_shopper_is_published_as_an_impression(api: Api) -> None:
    api.http.post("/v1/events", json=[view("e1", "me", "a"), view("e2", "me", "b")])
    api.process()
    served = api.recommend(user_id="me")
    api.recommend(user_id="me", session_id="visit-1")
    api.recommend()  # nobody to attribute it to: no impression

    first, second = api.impressions()
    assert first["user_id"] == "me" and first["list_id"] == served["list_id"]
    assert first["variant"] == served["variant"] == "champion"
    assert second["session_id"] == "visit-1"
    assert api.published() == 2  # the shop's two events
    api.process()  # impressions are attributed, and change nobody's list
    assert api.recommend(user_id="me")["list_id"] == served["list_id"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("false", False), ("0", False), ("no", False), ("true", True), ("1", True), ("t", True)],
)
def test_a_list_fetched_but_not_shown_records_no_impression(
    api: Api, value: str, shown: bool
) -> None:
    api.http.post("/v1/events", json=[view("e1", "me", "a")])
    api.process()
    served = api.recommend(user_id="me", impression=value)
    assert served["source"] == "personalized"
    assert len(api.impressions()) == (1 if shown else 0)


def test_an_impression_flag_that_is_no_bool_is_a_422(api: Api) -> None:
    response = api.http.get("/v1/recommendations", params={"user_id": "me", "impression": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "impression"]


@pytest.mark.parametrize(
    "query",
    [
        "user_id=me&k=3",  # answered in front of the framework
        "user_id=me&k=3&impression=t",  # a bool only the framework reads: answered by it
        "user_id=%6De&k=3",  # escaped: the same list
    ],
)
def test_every_page_route_gives_the_same_body(api: Api, query: str) -> None:
    api.http.post("/v1/events", json=[view("e1", "me", "a")])
    api.process()
    want = api.recommend(user_id="me", k=3)
    response = api.http.get(f"/v1/recommendations?{query}")
    assert response.status_code == 200
    assert response.headers["server-timing"].startswith("app;dur=")
    got = response.json()
    assert (got["items"], got["list_id"], got["source"]) == (
        want["items"],
        want["list_id"],
        want["source"],
    )


def test_health(api: Api) -> None:
    response = api.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "stream": "memory", "cache": "memory"}


def test_openapi_documents_the_event_and_item_bodies(api: Api) -> None:
    response = api.http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["oneOf"][0] == {"$ref": "#/components/schemas/EventIn"}
    assert schema["oneOf"][1]["items"] == {"$ref": "#/components/schemas/EventIn"}
    components = doc["components"]["schemas"]
    # One variant per event type, chosen by `type`, each requiring what its type needs.
    event = components["EventIn"]
    mapping = event["discriminator"]["mapping"]
    assert event["discriminator"]["propertyName"] == "type"
    assert set(mapping) == {t.value for t in EventType}
    assert sorted(event["oneOf"], key=str) == sorted(
        ({"$ref": ref} for ref in set(mapping.values())), key=str
    )
    needs = {
        "view": {"item_id"},
        "dwell": {"item_id", "dwell_ms"},
        "search": set(),
        "stock_change": {"item_id", "quantity"},
        "price_change": {"item_id", "price"},
        "item_upsert": {"item"},
    }
    for kind, fields in needs.items():
        variant = components[mapping[kind].removeprefix("#/components/schemas/")]
        assert set(variant["required"]) == {"event_id", "type", "ts", *fields}
        assert variant["additionalProperties"] is False
        shopper = kind not in ("stock_change", "price_change", "item_upsert")
        assert ("anyOf" in variant) is shopper  # a user_id or a session_id
    assert "item_id" not in components[mapping["item_upsert"].split("/")[-1]]["properties"]
    created_at = components["ItemIn"]["properties"]["created_at"]["anyOf"][0]
    assert created_at == {"type": "string", "format": "date-time"}
    put = doc["paths"]["/v1/catalog/items"]["put"]["requestBody"]["content"]
    assert put["application/json"]["schema"]["oneOf"][0] == {"$ref": "#/components/schemas/ItemIn"}
    assert "/v1/recommendations" in doc["paths"]
    for ref in _refs(doc):
        name = ref.removeprefix("#/components/schemas/")
        assert name in components, f"dangling {ref}"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
