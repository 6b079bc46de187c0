"""The embedded event log with the Redis cache and state: events in over HTTP, lists in
Redis, pages served from Redis and filtered against live stock at read time."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from shopper.adapters.list_format import decode_list
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.recommendation import Source
from shopper.errors import MissingExtra
from shopper.services.processor import Processor
from shopper.services.runtime import ApiServer
from tests.helpers import keyed

PREFIX = "it:"


@pytest.fixture
def system(redis_url: str) -> Iterator[System]:
    config = load_config({}, cache_url=redis_url, redis_key_prefix=PREFIX, popular_refresh_s=0)
    built = build_system(config)
    yield built
    built.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def http(system: System) -> Iterator[httpx.Client]:
    app = system.app()
    with (
        ApiServer(app) as url,
        httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as client,
    ):
        yield client


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def view(event_id: str, user: str, item: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "view",
        "ts": now_iso(),
        "user_id": user,
        "item_id": item,
        "context": {"country": "DE", "device": "mobile"},
    }


def drain(processor: Processor) -> None:
    """Run micro-batches until the stream has nothing more."""
    idle = 0
    while idle < 2:
        idle = idle + 1 if processor.run_once() == 0 else 0


def served(http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get("/v1/recommendations", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.redis
def test_processed_lists_live_in_redis_and_pages_are_stock_filtered(
    system: System, store: redis.Redis, http: httpx.Client
) -> None:
    catalog = [{"item_id": f"sku-{n}", "title": f"Item {n}", "stock": 5} for n in range(8)]
    assert http.put("/v1/catalog/items", json=catalog).status_code == 202
    journeys = {
        "bob": ["sku-0", "sku-1", "sku-2", "sku-3"],
        "carol": ["sku-0", "sku-1", "sku-3", "sku-4"],
        "dave": ["sku-1", "sku-2", "sku-5"],
        "alice": ["sku-0", "sku-1"],
    }
    events = [
        view(f"{user}-{n}", user, item)
        for user, items in journeys.items()
        for n, item in enumerate(items)
    ]
    assert http.post("/v1/events", json=events).status_code == 202
    processor = system.processor()
    try:
        drain(processor)
    finally:
        processor.close()

    keys = {k.decode() for k in store.scan_iter(match=f"{PREFIX}*")}
    for user in journeys:
        assert {f"{PREFIX}list:champion:u:{user}", f"{PREFIX}fresh:champion:u:{user}"} <= keys
        assert f"{PREFIX}session:u:{user}" in keys
        assert store.ttl(f"{PREFIX}list:champion:u:{user}") > 0
    assert {f"{PREFIX}popular:global", f"{PREFIX}popular:country:de"} <= keys
    assert {f"{PREFIX}item:sku-{n}" for n in range(8)} <= keys
    assert f"{PREFIX}hits:device:mobile" in keys

    stored = decode_list(store.get(f"{PREFIX}list:champion:u:alice") or b"")
    assert stored.source is Source.PERSONALIZED
    assert {"sku-2", "sku-3"} <= set(stored.item_ids())  # what alice's co-viewers saw next

    page = served(http, user_id="alice", k=10)
    assert page["source"] == "personalized"
    assert page["list_id"] == stored.list_id
    shown = [i["item_id"] for i in page["items"]]
    assert shown[: len(stored.items)] == stored.item_ids()[:10]

    top = shown[0]
    sell_out = {"event_id": "so-1", "type": "stock_change", "item_id": top, "quantity": 0}
    assert http.post("/v1/events", json={**sell_out, "ts": now_iso()}).status_code == 202
    assert store.sismember(f"{PREFIX}sold_out", top)
    # Nothing re-ranked alice: her stored list still has the item, the page does not.
    assert top in decode_list(store.get(f"{PREFIX}list:champion:u:alice") or b"").item_ids()
    # Hidden from the first read after the 202: the API answers a stock change once its own
    # pages show it.
    after = [i["item_id"] for i in served(http, user_id="alice", k=10)["items"]]
    assert top not in after
    assert after[: len(stored.items) - 1] == [i for i in stored.item_ids() if i != top][:10]

    anonymous = served(http, session_id="new-visitor", country="DE", k=5)
    assert anonymous["source"] == "popular"
    assert anonymous["list_id"] == "popular:country:de"
    assert anonymous["items"] and top not in [i["item_id"] for i in anonymous["items"]]


def test_a_redis_url_without_redis_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if it were not installed
    for module in ["shopper.adapters.redis_cache", "shopper.adapters.redis_processor_state"]:
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingExtra, match=r"pip install 'shopper\[redis\]'"):
        build_system(load_config({}, cache_url="redis://127.0.0.1:6379/0"))
