"""The rehearsal driver against a fake shop (an `httpx.MockTransport`, no sockets): it
counts the sold-out items a leaky shop serves, measures the freshness a shop is built to
have, reports the fallback share the shop served, and fails clearly on a dead target."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shopper.rehearsal.driver import RehearsalOptions, run_rehearsal
from shopper.rehearsal.plan import Plan
from shopper.rehearsal.profile import load_profile
from shopper.rehearsal.setup import RehearsalError

RUN_S = 1.5


@dataclass
class FakeShop:
    """A shopper's list changes `apply_s` after their event (if `writes_for` them);
    `leaky` serves sold-out items."""

    leaky: bool = False
    apply_s: float = 0.0
    writes_for: Callable[[str], bool] = lambda subject: True
    catalog: list[str] = field(default_factory=list)
    sold_out: set[str] = field(default_factory=set)
    lists: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    load_sources: Counter[str] = field(default_factory=Counter)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok", "stream": "fake", "cache": "fake"})
        if path == "/v1/catalog/items":
            items = json.loads(request.content)
            self.catalog += [i["item_id"] for i in items]
            return httpx.Response(202, json={"accepted": len(items), "rejected": []})
        if path == "/v1/events":
            body = json.loads(request.content)
            events = body if isinstance(body, list) else [body]
            for event in events:
                self._apply(event)
            return httpx.Response(202, json={"accepted": len(events), "rejected": []})
        return self._page(dict(request.url.params))

    def _apply(self, event: dict[str, Any]) -> None:
        if event["type"] == "stock_change":
            self.sold_out.add(event["item_id"])
        elif self.writes_for(_subject(event)):
            visible = time.perf_counter() + self.apply_s
            self.lists.setdefault(_subject(event), []).append((visible, uuid.uuid4().hex))

    def _page(self, params: dict[str, str]) -> httpx.Response:
        now = time.perf_counter()
        written = [lid for at, lid in self.lists.get(_subject(params), []) if at <= now]
        source, list_id = ("personalized", written[-1]) if written else ("popular", "popular:g")
        if params["session_id"].split("-")[-1].startswith("s"):  # the load, not a probe
            self.load_sources[source] += 1
        shown = [i for i in self.catalog[:10] if self.leaky or i not in self.sold_out]
        body = {
            "items": [{"item_id": i, "score": 1.0} for i in shown],
            "source": source, "list_id": list_id, "variant": "champion",
            "generated_at": "2026-01-01T00:00:00+00:00",
        }  # fmt: skip
        return httpx.Response(200, json=body, headers={"server-timing": "app;dur=0.250"})


def _subject(who: dict[str, Any]) -> str:
    return f"u:{who['user_id']}" if who.get("user_id") else f"s:{who['session_id']}"


def _rehearse(shop: FakeShop, **settings: Any) -> dict[str, Any]:
    profile = load_profile("smoke").scaled(seconds=RUN_S)
    plan = Plan(profile, seed=5, run_id=f"rh{uuid.uuid4().hex[:6]}")
    options = RehearsalOptions(target="http://shop", **settings)
    report: dict[str, Any] = run_rehearsal(plan, options, transport=httpx.MockTransport(shop))
    return report


def test_a_healthy_shop() -> None:
    shop = FakeShop(apply_s=0.1)
    report = _rehearse(shop)
    pages = report["pages"]
    assert pages["sent"] == pages["ok"] > 50 and pages["non_200"] == {} and pages["errors"] == {}
    assert pages["server"]["p50_ms"] == 0.25
    assert report["events"]["accepted"] == report["events"]["sent"] > 50
    assert report["setup"]["items_upserted"] == 40 and report["setup"]["items_retired"] == 0
    assert shop.sold_out == set(shop.catalog[:4])  # the four best sellers, and only them
    sold = report["sold_out"]
    assert (sold["stock_events"], sold["served"], sold["worst_delay_ms"]) == (4, 0, None)
    assert sold["seen_before"] > 0  # the sold-out items were on pages before: a real check
    fresh = report["freshness"]
    assert fresh["fresh"] >= 4 and fresh["stale"] == 0 and fresh["failed"] == 0
    # the shop shows a list 100 ms after the event; probes re-read every 20 ms
    assert 100 <= fresh["p50_ms"] <= 100 + 20 + 80
    assert report["sources"] == dict(shop.load_sources.most_common())
    expected = shop.load_sources["popular"] / shop.load_sources.total()
    assert report["fallback_share"] == pytest.approx(expected, abs=1e-4)
    assert 0 < report["fallback_share"] < 1


def test_a_target_that_stops_answering_ends_the_run() -> None:
    shop = FakeShop()
    started = time.perf_counter()

    def dying(request: httpx.Request) -> httpx.Response:
        if time.perf_counter() - started > 0.5:
            raise httpx.ConnectError("connection refused", request=request)
        return shop(request)

    plan = Plan(load_profile("smoke"), 5, "rhx")  # 8 s, were the target to stay
    options = RehearsalOptions(target="http://shop", lost_after_s=0.5)
    with pytest.raises(RehearsalError, match=r"the target stopped answering: no response for"):
        run_rehearsal(plan, options, None, httpx.MockTransport(dying))
    assert time.perf_counter() - started < 4


def test_retire_takes_the_run_s_items_out_of_stock_afterwards() -> None:
    shop = FakeShop()
    report = _rehearse(shop, retire=True)
    assert report["setup"]["items_retired"] == 40
    assert shop.sold_out == set(shop.catalog)


def test_a_shop_serving_sold_out_items_is_caught() -> None:
    report = _rehearse(FakeShop(leaky=True))
    sold = report["sold_out"]
    assert sold["stock_events"] == 4
    assert sold["served"] >= sold["pages"] > 0
    assert len(sold["items"]) >= 1
    assert sold["worst_delay_ms"] > 0


def test_lists_never_updated_are_stale() -> None:
    shop = FakeShop(writes_for=lambda subject: subject.endswith("-ready"))
    profile = load_profile("smoke")
    spec = profile.freshness.model_copy(update={"timeout_s": 0.3, "interval_s": 0.1})
    plan = Plan(profile.model_copy(update={"freshness": spec}).scaled(seconds=1.0), 5, "rhx")
    transport = httpx.MockTransport(shop)
    report = run_rehearsal(plan, RehearsalOptions(target="http://shop"), None, transport)
    fresh = report["freshness"]
    assert fresh["fresh"] == 0 and fresh["stale"] >= 4 and fresh["p99_ms"] is None


def test_a_shop_writing_no_lists_fails_the_ready_check() -> None:
    with pytest.raises(RehearsalError, match=r"wrote no list .* within 0.3 s: is a processor"):
        _rehearse(FakeShop(writes_for=lambda subject: False), ready_timeout_s=0.3)


def test_an_unreachable_target() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    plan = Plan(load_profile("smoke"), 5, "rhx")
    with pytest.raises(RehearsalError, match=r"cannot reach shopper at http://shop: connection"):
        run_rehearsal(plan, RehearsalOptions(target="http://shop"), None,
                      httpx.MockTransport(refuse))  # fmt: skip


def test_a_target_that_is_not_shopper() -> None:
    plan = Plan(load_profile("smoke"), 5, "rhx")
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    with pytest.raises(RehearsalError, match=r"healthz answered HTTP 404: is this a shopper"):
        run_rehearsal(plan, RehearsalOptions(target="http://shop"), None, transport)


@dataclass
class KeyedShop(FakeShop):
    """A fake shop that notes the `Authorization` of every request."""

    seen: Counter[str] = field(default_factory=Counter)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen[request.headers.get("authorization", "")] += 1
        return super().__call__(request)


def test_every_request_carries_the_admin_token() -> None:
    shop = KeyedShop(apply_s=0.05)
    token = "admin-token-of-the-rehearsal"
    report = _rehearse(shop, admin_token=token, ingest_key="ingest-key-of-the-rehearsal")
    assert report["events"]["accepted"] > 0
    assert set(shop.seen) == {f"Bearer {token}"}


def test_without_keys_no_authorization_is_sent() -> None:
    shop = KeyedShop(apply_s=0.05)
    _rehearse(shop)
    assert set(shop.seen) == {""}
