"""The embedded system end to end: events posted over HTTP change what the page reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shopper.adapters.system_clock import ManualClock
from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.ports.clock import Clock
from shopper.services.runtime import ApiServer
from tests.helpers import ShopHttp, ids, keyed, now_iso, view

WAIT_S = 5.0
FRESH_TTL_S = 60.0
LKG_TTL_S = 600.0


class Shop(ShopHttp):
    def wait_applied(self, count: int) -> None:
        """Wait until the processor has applied `count` events in all."""
        deadline = time.monotonic() + WAIT_S
        while self.applied() < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the processor did not apply {count} events within {WAIT_S}s")
            time.sleep(0.01)

    def page_until(self, done: Callable[[dict[str, Any]], bool], **params: Any) -> dict[str, Any]:
        """Read the page as a shop would until `done`, for at most WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            body = self.page(**params)
            if done(body):
                return body
            if time.monotonic() > deadline:
                pytest.fail(f"page never changed as expected within {WAIT_S}s; last: {body}")
            time.sleep(0.01)


def run_shop(clock: Clock | None = None) -> Iterator[Shop]:
    config = load_config(
        {},
        microbatch_wait_s=0.01,
        popular_refresh_s=0.1 if clock is None else 0,
        fresh_ttl_s=FRESH_TTL_S,
        lkg_ttl_s=LKG_TTL_S,
    )
    system = build_system(config, clock=clock)
    try:
        system.start_processor()
        app, headers = system.app(), keyed(system)
        with ApiServer(app) as url, httpx.Client(base_url=url, timeout=10, headers=headers) as http:
            yield Shop(system, http)
    finally:
        system.close()


@pytest.fixture
def shop() -> Iterator[Shop]:
    yield from run_shop()


@pytest.fixture
def clock() -> ManualClock:
    # Starts at the wall clock's time: the frontend dates its events by the wall clock,
    # and the API refuses events from further ahead than `max_event_skew_s`.
    return ManualClock(time.time())


@pytest.fixture
def shop_on_manual_clock(clock: ManualClock) -> Iterator[Shop]:
    yield from run_shop(clock)


def crowd(shop: Shop) -> None:
    shop.wait_applied(shop.post_crowd())


def test_posted_events_change_the_users_list(shop: Shop) -> None:
    crowd(shop)
    before = shop.page(user_id="me")
    assert before["source"] == "popular"

    shop.accept(view("me-1", "a", user_id="me"))
    after = shop.page_until(lambda body: body["source"] == "personalized", user_id="me")
    assert ids(after)[0] == "b", "a shopper viewing a gets what a's viewers viewed next"
    assert ids(after) != ids(before)
    assert after["list_id"] != before["list_id"]


def test_an_anonymous_session_gets_personalized(shop: Shop) -> None:
    crowd(shop)
    assert shop.page()["source"] == "popular"
    assert shop.page(session_id="visitor")["source"] == "popular"
    shop.accept(view("v-1", "a", session_id="visitor"))
    after = shop.page_until(lambda b: b["source"] == "personalized", session_id="visitor")
    assert ids(after)[0] == "b"
    assert shop.page(user_id="someone-else")["source"] == "popular"


def test_a_sold_out_item_is_gone_from_the_very_next_read(shop: Shop) -> None:
    crowd(shop)
    shop.accept(view("me-1", "a", user_id="me"))
    shop.page_until(lambda b: ids(b)[:1] == ["b"], user_id="me")
    shop.accept(
        {"event_id": "sale", "type": "stock_change", "ts": now_iso(), "item_id": "b", "quantity": 0}
    )
    # No waiting: the very next read must not show the item.
    assert "b" not in ids(shop.page(user_id="me", k=20))
    assert "b" not in ids(shop.page(user_id="stranger", k=20))


def test_last_known_good_is_served_once_the_fresh_list_expires(
    shop_on_manual_clock: Shop, clock: ManualClock
) -> None:
    shop = shop_on_manual_clock
    crowd(shop)
    shop.accept(view("me-1", "a", user_id="me"))
    fresh = shop.page_until(lambda b: b["source"] == "personalized", user_id="me")

    clock.advance(FRESH_TTL_S + 1)
    stale = shop.page(user_id="me")
    assert stale["source"] == "last_known_good"
    assert ids(stale) == ids(fresh)
    assert stale["list_id"] == fresh["list_id"]

    clock.advance(LKG_TTL_S)
    gone = shop.page(user_id="me")
    assert gone["source"] == "popular"


def test_the_service_reports_health(shop: Shop) -> None:
    response = shop.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
