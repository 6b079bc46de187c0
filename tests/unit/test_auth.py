"""API keys over a real server: each write route and event kind answers 401 without a
key or with an unknown one, 403 with a key of the wrong kind (nothing of the batch
published), 2xx with the right one; reads open, or keyed when a read key is set (the
page's fast path and its FastAPI route alike); admin writes audited, keys never logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from shopper.api.auth import AUDIT_LOGGER, AUDIT_MAX_ITEMS
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from tests.helpers import bearer, keyed
from tests.unit.api_harness import MAX_BATCH, MAX_K, Api, SwitchableApp
from tests.unit.factories import wire

READ_KEY = "read-key-for-the-tests-0123"
UNKNOWN = "not-a-key-of-this-server-0123"

BEHAVIOUR: dict[str, dict[str, Any]] = {
    "view": {"user_id": "me", "item_id": "a"},
    "click": {"user_id": "me", "item_id": "a"},
    "add_to_cart": {"user_id": "me", "item_id": "a", "quantity": 1},
    "remove_from_cart": {"user_id": "me", "item_id": "a"},
    "purchase": {"user_id": "me", "item_id": "a", "quantity": 1},
    "dwell": {"session_id": "s1", "item_id": "a", "dwell_ms": 1200},
    "search": {"session_id": "s1", "query": "shoes"},
}
CATALOG: dict[str, dict[str, Any]] = {
    "item_upsert": {"item": {"item_id": "a", "title": "A", "stock": 3}},
    "stock_change": {"item_id": "a", "quantity": 0},
    "price_change": {"item_id": "a", "price": 9.5},
}


def event(kind: str) -> dict[str, Any]:
    fields = BEHAVIOUR.get(kind, CATALOG.get(kind, {}))
    return wire(f"e-{kind}", kind, ts=time.time(), **fields)


@pytest.fixture
def api(server: tuple[SwitchableApp, str]) -> Iterator[Api]:
    """As the unit tests' `api`, on the system clock: catalog writes are stamped now."""
    switch, url = server
    system = build_system(load_config({}, max_batch=MAX_BATCH, max_k=MAX_K))
    switch.target = system.app()
    with httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as http:
        yield Api(system, http)
    switch.target = None
    system.close()


@pytest.fixture
def bare(api: Api) -> Iterator[httpx.Client]:
    """A client of the same server that sends no key unless told."""
    with httpx.Client(base_url=api.http.base_url, timeout=10) as http:
        yield http


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]


# -- writes: POST /v1/events, per event kind ------------------------------------------


@pytest.mark.parametrize("kind", [*BEHAVIOUR, *CATALOG])
def test_an_event_without_a_key_is_401_and_not_published(
    api: Api, bare: httpx.Client, kind: str
) -> None:
    response = bare.post("/v1/events", json=[event(kind)])
    assert_401(response)
    assert response.headers["www-authenticate"] == "Bearer"
    assert api.published() == 0


@pytest.mark.parametrize("kind", [*BEHAVIOUR, *CATALOG])
def test_an_event_with_an_unknown_key_is_401_and_not_published(
    api: Api, bare: httpx.Client, kind: str
) -> None:
    response = bare.post("/v1/events", json=[event(kind)], headers=bearer(UNKNOWN))
    assert_401(response)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert UNKNOWN not in response.text
    assert api.published() == 0


@pytest.mark.parametrize("kind", BEHAVIOUR)
def test_the_ingest_key_posts_behaviour_events(api: Api, bare: httpx.Client, kind: str) -> None:
    response = bare.post("/v1/events", json=[event(kind)], headers=bearer(api.system.keys.ingest))
    assert response.status_code == 202, response.text
    assert api.published() == 1


@pytest.mark.parametrize("kind", [*BEHAVIOUR, *CATALOG])
def test_the_admin_token_posts_every_event_kind(api: Api, bare: httpx.Client, kind: str) -> None:
    response = bare.post("/v1/events", json=[event(kind)], headers=bearer(api.system.keys.admin))
    assert response.status_code == 202, response.text
    assert api.published() == 1


@pytest.mark.parametrize("kind", CATALOG)
def test_the_ingest_key_posting_a_catalog_event_is_403_and_nothing_of_the_batch_goes_in(
    api: Api, bare: httpx.Client, kind: str
) -> None:
    batch = [event("view"), event(kind), event("search")]
    response = bare.post("/v1/events", json=batch, headers=bearer(api.system.keys.ingest))
    assert response.status_code == 403, response.text
    assert kind in response.json()["detail"] and "admin token" in response.json()["detail"]
    assert api.published() == 0


# -- writes: PUT /v1/catalog/items ---------------------------------------------------

ITEMS = [{"item_id": "a", "title": "A", "stock": 3}, {"item_id": "b", "stock": 0}]


def test_a_catalog_write_without_a_key_is_401(api: Api, bare: httpx.Client) -> None:
    assert_401(bare.put("/v1/catalog/items", json=ITEMS))
    assert api.published() == 0


def test_a_catalog_write_with_an_unknown_key_is_401(api: Api, bare: httpx.Client) -> None:
    assert_401(bare.put("/v1/catalog/items", json=ITEMS, headers=bearer(UNKNOWN)))
    assert api.published() == 0


def test_a_catalog_write_with_the_ingest_key_is_403(api: Api, bare: httpx.Client) -> None:
    response = bare.put("/v1/catalog/items", json=ITEMS, headers=bearer(api.system.keys.ingest))
    assert response.status_code == 403
    assert "admin token" in response.json()["detail"]
    assert api.published() == 0


def test_a_catalog_write_with_the_admin_token_is_202(api: Api, bare: httpx.Client) -> None:
    response = bare.put("/v1/catalog/items", json=ITEMS, headers=bearer(api.system.keys.admin))
    assert response.status_code == 202, response.text
    assert api.published() == 2


def test_the_key_is_checked_before_the_body_is_read(api: Api, bare: httpx.Client) -> None:
    # Not JSON at all: without a key the answer is 401, not the body's 400.
    assert_401(bare.post("/v1/events", content=b"{not json"))
    assert_401(bare.put("/v1/catalog/items", content=b"{not json"))


def test_the_scheme_name_is_case_insensitive(api: Api, bare: httpx.Client) -> None:
    headers = {"authorization": f"bearer {api.system.keys.admin}"}
    assert bare.put("/v1/catalog/items", json=ITEMS, headers=headers).status_code == 202


def test_another_scheme_is_no_key(api: Api, bare: httpx.Client) -> None:
    headers = {"authorization": f"Basic {api.system.keys.admin}"}
    assert_401(bare.put("/v1/catalog/items", json=ITEMS, headers=headers))


# -- reads ----------------------------------------------------------------------------


def test_reads_are_open_without_a_read_key(api: Api, bare: httpx.Client) -> None:
    assert bare.get("/v1/recommendations", params={"user_id": "me"}).status_code == 200
    assert bare.get("/v1/recommendations", params={"user_id": "me", "k": 0}).status_code == 422
    assert bare.get("/v1/items/a/similar").status_code == 200
    assert bare.get("/v1/experiments").status_code == 200
    assert bare.get("/v1/dashboard/series").status_code == 200
    # An unknown key on an open read is no reason to refuse it.
    assert bare.get("/v1/items/a/similar", headers=bearer(UNKNOWN)).status_code == 200


@pytest.fixture
def read_keyed(server: tuple[SwitchableApp, str]) -> Iterator[tuple[httpx.Client, System]]:
    """A system with a read key set, behind the server; a client sending no key."""
    switch, url = server
    config = load_config({}, max_batch=MAX_BATCH, max_k=MAX_K, read_key=READ_KEY)
    system = build_system(config)
    switch.target = system.app()
    with httpx.Client(base_url=url, timeout=10) as http:
        yield http, system
    switch.target = None
    system.close()


READS = [
    ("/v1/recommendations", {"user_id": "me"}),  # the page's fast path
    ("/v1/recommendations", {"user_id": "me", "impression": "maybe"}),  # its FastAPI route
    ("/v1/items/a/similar", {}),
    ("/v1/experiments", {}),
    ("/v1/dashboard/series", {}),
]


@pytest.mark.parametrize(("path", "params"), READS)
def test_with_a_read_key_a_read_without_one_is_401(
    read_keyed: tuple[httpx.Client, System], path: str, params: dict[str, str]
) -> None:
    http, _ = read_keyed
    assert_401(http.get(path, params=params))
    assert_401(http.get(path, params=params, headers=bearer(UNKNOWN)))


@pytest.mark.parametrize(("path", "params"), READS)
def test_with_a_read_key_the_ingest_key_may_not_read(
    read_keyed: tuple[httpx.Client, System], path: str, params: dict[str, str]
) -> None:
    http, system = read_keyed
    response = http.get(path, params=params, headers=bearer(system.keys.ingest))
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(("path", "params"), READS)
def test_with_a_read_key_the_read_key_and_the_admin_token_read(
    read_keyed: tuple[httpx.Client, System], path: str, params: dict[str, str]
) -> None:
    http, system = read_keyed
    # `impression=maybe` is the FastAPI route's validation error: past the key check.
    ok = 422 if params.get("impression") == "maybe" else 200
    assert http.get(path, params=params, headers=bearer(READ_KEY)).status_code == ok
    assert http.get(path, params=params, headers=bearer(system.keys.admin)).status_code == ok


def test_with_a_read_key_the_fastapi_page_route_checks_it_too(
    read_keyed: tuple[httpx.Client, System],
) -> None:
    """The page's FastAPI route (behind the fast path) on its own: well-formed requests."""
    _, system = read_keyed
    transport = httpx.ASGITransport(app=cast(FastAPI, system.app().app))
    params = {"user_id": "me"}

    async def read(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://shopper") as http:
            return await http.get("/v1/recommendations", params=params, headers=headers)

    assert_401(asyncio.run(read({})))
    assert asyncio.run(read(bearer(system.keys.ingest))).status_code == 403
    assert asyncio.run(read(bearer(READ_KEY))).status_code == 200


@pytest.mark.parametrize("kind", [*BEHAVIOUR, *CATALOG])
def test_the_read_key_posting_an_event_is_403(
    read_keyed: tuple[httpx.Client, System], kind: str
) -> None:
    http, system = read_keyed
    response = http.post("/v1/events", json=[event(kind)], headers=bearer(READ_KEY))
    assert response.status_code == 403, response.text
    assert "read key cannot write" in response.json()["detail"]
    assert Api(system, http).published() == 0


def test_the_read_key_cannot_write_the_catalog(read_keyed: tuple[httpx.Client, System]) -> None:
    http, _ = read_keyed
    response = http.put("/v1/catalog/items", json=ITEMS, headers=bearer(READ_KEY))
    assert response.status_code == 403


def test_health_and_metrics_stay_open(read_keyed: tuple[httpx.Client, System]) -> None:
    http, _ = read_keyed
    assert http.get("/healthz").status_code == 200
    assert http.get("/metrics").status_code == 200


# -- audit, and no key in any log ----------------------------------------------------


def test_an_admin_write_is_audited_without_the_key(
    api: Api, bare: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    items = [{"item_id": f"i{n}", "stock": 1} for n in range(AUDIT_MAX_ITEMS + 5)][:MAX_BATCH]
    admin = api.system.keys.admin
    assert bare.put("/v1/catalog/items", json=items, headers=bearer(admin)).status_code == 202
    batch = [event("stock_change"), event("view")]
    assert bare.post("/v1/events", json=batch, headers=bearer(admin)).status_code == 202

    audits = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert len(audits) == 2
    put, post = (json.loads(r.getMessage()) for r in audits)
    assert put["action"] == "PUT /v1/catalog/items" and put["by"] == "admin"
    assert put["types"] == {"item_upsert": len(items)} and put["accepted"] == len(items)
    assert put["items"] == [i["item_id"] for i in items][:AUDIT_MAX_ITEMS]
    assert put["items_total"] == len(items) and put["status"] == 202
    assert put["client"].startswith("127.0.0.1:") and put["at"]
    assert post["action"] == "POST /v1/events"
    assert post["types"] == {"stock_change": 1, "view": 1} and post["items"] == ["a", "a"]
    assert admin not in caplog.text


def test_ingest_writes_and_refused_writes_are_not_audited_and_log_no_key(
    api: Api, bare: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ingest = api.system.keys.ingest
    assert bare.post("/v1/events", json=[event("view")], headers=bearer(ingest)).status_code == 202
    refused = bare.post("/v1/events", json=[event("stock_change")], headers=bearer(ingest))
    assert refused.status_code == 403
    assert bare.post("/v1/events", json=[event("view")], headers=bearer(UNKNOWN)).status_code == 401
    assert not [r for r in caplog.records if r.name == AUDIT_LOGGER]
    for secret in (ingest, api.system.keys.admin, UNKNOWN):
        assert secret not in caplog.text


def test_a_hostile_item_id_cannot_forge_an_audit_line(
    api: Api, bare: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    hostile = [{"item_id": 'x"\n{"by": "nobody"}', "stock": 1}]
    bare.put("/v1/catalog/items", json=hostile, headers=bearer(api.system.keys.admin))
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert "\n" not in record.getMessage()
    assert json.loads(record.getMessage())["by"] == "admin"


def test_a_type_that_is_not_a_string_is_rejected_not_a_crash(api: Api, bare: httpx.Client) -> None:
    odd = [event("view") | {"type": ["stock_change"]}, event("view") | {"type": {"a": 1}}]
    response = bare.post("/v1/events", json=odd, headers=bearer(api.system.keys.ingest))
    assert response.status_code == 422, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [0, 1]
