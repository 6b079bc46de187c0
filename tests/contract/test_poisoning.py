"""No event poisons what everyone sees, on the in-memory and the Redis cache and state alike.

Each case runs two shops side by side, built the same way: a control, and one that also
takes the attack. Both then get the same honest traffic, which re-ranks every honest
shopper; their lists and the popular lists must come out the same in both (or, where the
attack is legitimate behaviour, correct). The stream is the embedded log in both cases;
events come in through the API's ingest, or straight onto the stream as a producer with
access to the broker could put them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis

from shopper.adapters.system_clock import SystemClock
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.recommendation import DEFAULT_VARIANT
from shopper.ports.cache import ListKey
from shopper.services.processor import Processor
from shopper.services.serving import PageRequest
from tests.unit.factories import drain

CATALOG = [f"sku-{n}" for n in range(8)]
HONEST = ["alice", "bob", "carol", "dave"]
JOURNEYS = {
    "alice": ["sku-0", "sku-1", "sku-2"],
    "bob": ["sku-0", "sku-1", "sku-3"],
    "carol": ["sku-2", "sku-4", "sku-5"],
    "dave": ["sku-5", "sku-6", "sku-1"],
}
FAR_FUTURE = "9999-12-31T00:00:00+00:00"
HOSTILE = ["<img src=x onerror=alert(1)>", "../../etc/passwd"]
NEIGHBOUR_STALENESS_S = 1.1  # the processor states' `staleness_s` (1 s), and a margin


# Every event of both shops happens at this moment, unless a test says otherwise: equal
# counts then tie exactly in both (broken by id), never by which shop ran a moment later.
AT = datetime.fromtimestamp(int(time.time()) - 60, UTC).isoformat()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def event(event_id: str, type: str = "view", **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type, "ts": AT, **fields}


@dataclass
class Shop:
    """One system (its API's ingest, a processor) and what its shoppers are shown."""

    system: System
    processor: Processor

    def post(self, *events: dict[str, Any]) -> int:
        """Through the API's ingest; returns the events accepted (all must be)."""
        accepted = 0
        for start in range(0, len(events), 1000):
            result = self.system.ingest.ingest(list(events[start : start + 1000]))
            assert not result.rejected, result.rejected
            accepted += result.accepted
        return accepted

    def produce(self, topic: str, key: str, raw: dict[str, Any]) -> None:
        """Straight onto the stream, past the API (a producer with broker access)."""
        self.system.event_log.publish(topic, key, json.dumps(raw).encode())

    def process(self) -> None:
        drain(self.system, self.processor)

    def list_of(self, user: str) -> list[str]:
        fresh = self.system.cache.read_page(ListKey(f"u:{user}", DEFAULT_VARIANT), []).fresh
        assert fresh is not None, f"no list for {user}"
        return fresh.item_ids()

    def popular(self, segment: str) -> list[str]:
        lists = self.system.cache.read_page(None, [segment]).popular
        return lists[0].item_ids() if lists else []

    def page(self, **request: Any) -> tuple[str, list[str]]:
        served = self.system.reader.recommend(PageRequest(**request))
        return served.list_id, served.item_ids()

    def everyone_sees(self) -> dict[str, list[str]]:
        """Every honest shopper's list and the popular lists they fall back on."""
        seen = {user: self.list_of(user) for user in HONEST}
        for segment in ("global", "country:de", "device:mobile"):
            seen[segment] = self.popular(segment)
        return seen


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache_url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@pytest.fixture
def shops(cache_url: str) -> Iterator[tuple[Shop, Shop]]:
    """A control shop and one to attack, with the same catalog and history."""
    built = []
    for name in ("control", "attacked"):
        config = load_config(
            {},
            cache_url=cache_url,
            redis_key_prefix=f"poison-{name}:",
            microbatch_wait_s=0,
            popular_refresh_s=0,
        )
        system = build_system(config, clock=SystemClock())
        shop = Shop(system, system.processor())
        shop.post(*(catalog_upsert(item, stock=5) for item in CATALOG))
        shop.post(*history())
        shop.process()
        built.append(shop)
    yield built[0], built[1]
    for shop in built:
        shop.processor.close()
        shop.system.close()


def catalog_upsert(item: str, stock: int, event_id: str | None = None) -> dict[str, Any]:
    """As `PUT /v1/catalog/items` makes it."""
    return event(
        event_id or f"upsert-{item}-{stock}", "item_upsert", item={"item_id": item, "stock": stock}
    )


def history() -> list[dict[str, Any]]:
    context = {"country": "DE", "device": "mobile"}
    return [
        event(f"{user}-{n}", user_id=user, item_id=item, context=context)
        for user, items in JOURNEYS.items()
        for n, item in enumerate(items)
    ]


def honest_traffic(shop: Shop, purchases: int = 0) -> None:
    """Every honest shopper acts again (so each is re-ranked), and `purchases` purchases of
    sku-7 by shoppers of their own."""
    context = {"country": "DE", "device": "mobile"}
    again = [event(f"{u}-again", user_id=u, item_id="sku-3", context=context) for u in HONEST]
    bought = [
        event(f"buy-{n}", "purchase", session_id=f"buyer-{n}", item_id="sku-7", context=context)
        for n in range(purchases)
    ]
    shop.post(*bought, *again)
    shop.process()


def test_a_far_future_stock_change_cannot_outlast_a_restock(shops: tuple[Shop, Shop]) -> None:
    control, attacked = shops
    c = attacked.system.config
    # Through the API: refused, with the reason.
    poison = event("poison-1", "stock_change", item_id="sku-1", quantity=0, ts=FAR_FUTURE)
    result = attacked.system.ingest.ingest([poison])
    assert result.accepted == 0 and "ahead of the server's clock" in result.rejected[0].reasons[0]
    # Straight onto the catalog topic: applied as of when the stream took it.
    attacked.produce(c.catalog_topic, "item:sku-1", poison)
    attacked.process()
    assert attacked.system.cache.sold_out_among(["sku-1"]) == {"sku-1"}
    assert "sku-1" not in attacked.popular("global")

    # The restock (an event, then a catalog upsert) wins at once, before any processing...
    attacked.post(event("restock-1", "stock_change", item_id="sku-1", quantity=4))
    assert attacked.system.cache.sold_out_among(["sku-1"]) == set()
    attacked.produce(c.catalog_topic, "item:sku-1", poison | {"event_id": "poison-2"})
    attacked.post(catalog_upsert("sku-1", stock=6, event_id="upsert-2"))
    # ...and still when the processor applies the poison replayed behind it.
    attacked.process()
    assert attacked.system.cache.sold_out_among(["sku-1"]) == set()

    honest_traffic(control)
    honest_traffic(attacked)
    assert attacked.everyone_sees() == control.everyone_sees()
    assert "sku-1" in attacked.popular("global")


def test_a_far_future_view_moves_no_landmark_and_purchases_still_count(
    shops: tuple[Shop, Shop],
) -> None:
    control, attacked = shops
    view = event("mallory-1", user_id="mallory", item_id="sku-6")
    refused = attacked.system.ingest.ingest([view | {"ts": FAR_FUTURE}])
    assert refused.accepted == 0 and refused.rejected[0].event_id == "mallory-1"
    # Past the API, the same view counts as of when the stream took it: as a view now does.
    topic = attacked.system.config.events_topic
    attacked.produce(topic, "u:mallory", view | {"ts": FAR_FUTURE})
    control.post(view | {"ts": now_iso()})

    honest_traffic(control, purchases=100)
    honest_traffic(attacked, purchases=100)
    seen = attacked.everyone_sees()
    assert seen == control.everyone_sees()
    assert seen["global"][0] == "sku-7"  # the purchases counted
    top = attacked.system.state.popular("global", 3)
    assert all(score > 0 for _, score in top)


def test_unknown_and_hostile_ids_are_never_recommended_until_listed(
    shops: tuple[Shop, Shop],
) -> None:
    control, attacked = shops
    context = {"country": "DE", "device": "mobile"}
    # Anonymous shoppers who view sku-0 (both shops see that), then buy the hostile ids:
    # they are popular, and neighbours of sku-0.
    viewed = [
        event(f"v-{n}", session_id=f"anon-{n}", item_id="sku-0", context=context)
        for n in range(300)
    ]
    bought = [
        event(f"x-{n}-{i}", "purchase", session_id=f"anon-{n}", item_id=item, context=context)
        for n in range(300)
        for i, item in enumerate(HOSTILE)
    ]
    control.post(*viewed)
    assert attacked.post(*viewed) == 300
    control.process()
    attacked.process()
    assert attacked.post(*bought) == 600
    attacked.process()
    assert {i for i, _ in attacked.system.state.neighbours("sku-0", 10)} >= set(HOSTILE)
    # The states reuse a neighbour row for up to a second (a new pair drops it at once, as
    # the attack's did): both shops rank from fresh rows after that.
    time.sleep(NEIGHBOUR_STALENESS_S)
    honest_traffic(control)
    honest_traffic(attacked)

    seen = attacked.everyone_sees()
    assert seen == control.everyone_sees()
    assert not {i for items in seen.values() for i in items} & set(HOSTILE)
    assert not set(attacked.page(session_id="stranger", country="DE")[1]) & set(HOSTILE)
    # Behaviour on them was recorded: listed, the first is the most bought item at once.
    attacked.post(catalog_upsert(HOSTILE[0], stock=1))
    attacked.process()
    assert attacked.popular("global")[0] == HOSTILE[0]
    assert attacked.popular("country:de")[0] == HOSTILE[0]
    assert HOSTILE[1] not in attacked.popular("global")


def test_made_up_countries_make_no_segments(shops: tuple[Shop, Shop]) -> None:
    control, attacked = shops
    made_up = [
        event(
            f"m-{n}",
            session_id=f"made-up-{n // 10}",
            item_id="sku-4",
            context={"country": f"zz{n}"},
        )
        for n in range(10_000)
    ]
    assert attacked.post(*made_up) == 10_000
    # The control sees the same views with no country stated.
    control.post(*({k: v for k, v in e.items() if k != "context"} for e in made_up))
    attacked.process()
    control.process()
    honest_traffic(control)
    honest_traffic(attacked)

    assert attacked.everyone_sees() == control.everyone_sees()
    state = attacked.system.state
    assert all(state.popular(f"country:zz{n}", 5) == [] for n in range(0, 10_000, 97))
    assert [i for i, _ in state.popular("country:other", 5)] == ["sku-4"]
    list_id, items = attacked.page(session_id="someone", country="zz42")
    assert (list_id, items[0]) == ("popular:country:other", "sku-4")
    if attacked.system.config.cache_url.startswith("redis"):
        prefix = attacked.system.config.redis_key_prefix
        client = redis.Redis.from_url(attacked.system.config.cache_url)
        try:
            stored = cast(set[bytes], client.smembers(f"{prefix}hits_segments"))
            segments = {s.decode() for s in stored}
            hit_keys = list(client.scan_iter(match=f"{prefix}hits:*", count=1000))
        finally:
            client.close()
        assert segments == {"global", "country:de", "device:mobile", "country:other"}
        assert len(hit_keys) == len(segments)


def test_made_up_items_are_counted_only_up_to_the_bound(cache_url: str) -> None:
    """Behaviour on 600 ids the catalog does not list keeps the counts of the last 50 seen
    only (`max_unlisted_items`): no client grows the state without bound."""
    config = load_config(
        {},
        cache_url=cache_url,
        redis_key_prefix="poison-unlisted:",
        microbatch_wait_s=0,
        popular_refresh_s=0,
        max_unlisted_items=50,
    )
    system = build_system(config, clock=SystemClock())
    shop = Shop(system, system.processor())
    try:
        shop.post(*(catalog_upsert(item, stock=5) for item in CATALOG))
        made_up = [f"made-up-{n}" for n in range(600)]
        for start in range(0, 600, 50):  # the last 50 are seen last (in whatever order)
            shop.post(
                *(
                    event(f"u-{n}-{k}", session_id=f"s-{n}", item_id=item)
                    for n in range(start, start + 50)
                    for k, item in enumerate(("sku-0", made_up[n]))
                )
            )
            shop.process()
        counted = {i for i, _ in system.state.popular("global", 1000)} - set(CATALOG)
        assert counted == set(made_up[-50:])
        assert system.state.neighbours("made-up-0", 10) == []
        assert {i for i, _ in system.state.neighbours("sku-0", 1000)} == set(made_up[-50:])
        if cache_url.startswith("redis"):
            client = redis.Redis.from_url(cache_url)
            try:
                rows = list(client.scan_iter(match="poison-unlisted:co:made-up-*", count=1000))
                unlisted = client.zcard("poison-unlisted:unlisted")
            finally:
                client.close()
            assert len(rows) == 50 and unlisted == 50
        # Listed now, the last one counted ranks at once.
        shop.post(catalog_upsert(made_up[-1], stock=1))
        shop.process()
        assert made_up[-1] in shop.popular("global")
    finally:
        shop.processor.close()
        system.close()
