"""A seeded shop: catalog, shoppers browsing in parallel sessions, a flash sale, a viral item."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shopper.demo.client import ShopClient, Shopper

CATEGORIES = [
    ("home", "kitchen"),
    ("home", "garden"),
    ("fashion", "shoes"),
    ("fashion", "bags"),
    ("electronics", "audio"),
    ("electronics", "phones"),
    ("sports", "running"),
    ("sports", "cycling"),
    ("toys", "puzzles"),
    ("beauty", "skincare"),
]
BRANDS = ["acme", "northwind", "globex", "initech", "umbrella", "hooli", "stark", "wayne"]
COUNTRIES = ["gb", "de", "fr", "nl", "es"]
DEVICES = ["mobile", "mobile", "desktop", "tablet"]
REFERRERS = ["search", "social", "email", "direct"]


CART_RATE = 0.18  # a page view's chance of an add-to-cart
BUY_RATE = 0.45  # a carted item's chance of being bought at checkout


@dataclass(frozen=True, slots=True)
class SimulationParams:
    shoppers: int = 600
    items: int = 400
    seed: int = 7
    concurrent_sessions: int = 40
    flash_sale_at: float = 0.4  # share of shoppers after which the sale starts
    flash_items: int = 12
    flash_stock: tuple[int, int] = (4, 12)
    viral_share: float = 0.3  # share of page views that go to the viral item during the sale
    click_rate: float = 0.4
    # (variant, factor): a shopper last served that variant's list adds to cart and buys
    # with `factor` times the usual probability (an experiment arm that converts
    # differently; `shopper demo --experiment`).
    conversion_by_variant: tuple[tuple[str, float], ...] = ()
    # Part of every event id (`sim-<seed>-<run>-<n>`): runs of one seed, each with a run
    # of its own, send distinct events, as a shop's successive days do. Empty: `sim-<seed>-<n>`.
    run: str = ""


@dataclass
class _Session:
    shopper: Shopper
    taste: list[int]  # preferred category indexes
    pages_left: int
    current: str | None = None
    cart: list[str] = field(default_factory=list)
    shown: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulationSummary:
    flash_items: list[str] = field(default_factory=list)
    viral_item: str = ""
    sold_out_during_sale: list[str] = field(default_factory=list)
    recommended_clicks: int = 0
    page_views: int = 0


class ShopSimulator:
    def __init__(self, params: SimulationParams) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.items = [self._item(i) for i in range(params.items)]
        self.by_category: dict[int, list[str]] = {}
        for i, item in enumerate(self.items):
            self.by_category.setdefault(i % len(CATEGORIES), []).append(item["item_id"])
        self.stock = {item["item_id"]: item["stock"] for item in self.items}
        self.summary = SimulationSummary()
        self._seq = 0
        self._sale_on = False

    def run(self, shop: ShopClient, tick: Callable[[int], None] = lambda _: None) -> None:
        shop.upsert_items(self.items)
        waiting = [self._new_session(n) for n in range(self.p.shoppers)]
        active: list[_Session] = []
        started = 0
        while waiting or active:
            while waiting and len(active) < self.p.concurrent_sessions:
                active.append(waiting.pop(0))
                started += 1
                if not self._sale_on and started >= self.p.shoppers * self.p.flash_sale_at:
                    self._start_flash_sale(shop)
            session = self.rng.choice(active)
            self._page(shop, session)
            if session.pages_left <= 0:
                self._checkout(shop, session)
                active.remove(session)
                tick(1)

    def _item(self, i: int) -> dict[str, Any]:
        top, sub = CATEGORIES[i % len(CATEGORIES)]
        return {
            "item_id": f"sku-{i:04d}",
            "title": f"{sub.title()} item {i}",
            "category": [top, sub],
            "brand": self.rng.choice(BRANDS),
            "price": round(self.rng.uniform(5, 300), 2),
            "stock": self.rng.randint(50, 500),
            "created_at": _iso(1_700_000_000 + i * 60),
        }

    def _new_session(self, n: int) -> _Session:
        signed_in = self.rng.random() < 0.6
        shopper = Shopper(
            user_id=f"user-{n}" if signed_in else None,
            session_id=f"sess-{n}-{self.rng.getrandbits(32):08x}",
            country=self.rng.choice(COUNTRIES),
            device=self.rng.choice(DEVICES),
        )
        taste = self.rng.sample(range(len(CATEGORIES)), 2)
        return _Session(shopper, taste, pages_left=self.rng.randint(4, 12))

    def _start_flash_sale(self, shop: ShopClient) -> None:
        self._sale_on = True
        flash = self.rng.sample([it["item_id"] for it in self.items], self.p.flash_items)
        self.summary.flash_items = flash
        self.summary.viral_item = flash[0]
        events = []
        for item_id in flash:
            self.stock[item_id] = self.rng.randint(*self.p.flash_stock)
            events.append(self._catalog("stock_change", item_id, quantity=self.stock[item_id]))
        shop.post(events)

    def _next_item(self, session: _Session) -> tuple[str, dict[str, Any]]:
        """Where the shopper goes next: a recommended item, the viral item, or browsing."""
        shown = session.shown
        if shown.get("items") and self.rng.random() < self.p.click_rate:
            pos = min(int(self.rng.expovariate(0.5)), len(shown["items"]) - 1)
            self.summary.recommended_clicks += 1
            ref = {"list_id": shown["list_id"], "variant": shown["variant"], "position": pos}
            return shown["items"][pos]["item_id"], ref
        if self._sale_on and self.rng.random() < self.p.viral_share:
            return self.summary.viral_item, {}
        if self._sale_on and self.rng.random() < 0.15:
            return self.rng.choice(self.summary.flash_items), {}
        category = self.rng.choice(session.taste)
        pool = self.by_category[category]
        # A few best-sellers per category: shoppers do not pick uniformly.
        idx = min(int(self.rng.paretovariate(1.2)) - 1, len(pool) - 1)
        return pool[idx], {}

    def _page(self, shop: ShopClient, session: _Session) -> None:
        item_id, ref = self._next_item(session)
        s = session.shopper
        events = []
        if session.current is not None:
            dwell = int(self.rng.expovariate(1 / 15_000))
            events.append(self._event("dwell", s, session.current, dwell_ms=dwell))
        if ref:
            events.append(self._event("click", s, item_id, **ref))
        events.append(self._event("view", s, item_id))
        if self.stock.get(item_id, 0) > 0 and self.rng.random() < CART_RATE * self._lift(session):
            events.append(self._event("add_to_cart", s, item_id, quantity=1))
            session.cart.append(item_id)
        shop.post(events)
        self.summary.page_views += 1
        session.current = item_id
        session.pages_left -= 1
        session.shown = shop.recommend(s, context_item=item_id)

    def _checkout(self, shop: ShopClient, session: _Session) -> None:
        events = []
        buy = min(1.0, BUY_RATE * self._lift(session))
        for item_id in session.cart:
            if self.rng.random() > 1 - buy or self.stock.get(item_id, 0) <= 0:
                continue
            self.stock[item_id] -= 1
            events.append(self._event("purchase", session.shopper, item_id, quantity=1))
            if self.stock[item_id] == 0:
                # The inventory feed reports the sell-out with the purchase that caused it.
                events.append(self._catalog("stock_change", item_id, quantity=0))
                self.summary.sold_out_during_sale.append(item_id)
        shop.post(events)

    def _lift(self, session: _Session) -> float:
        """The conversion factor of the variant whose list the shopper was last shown."""
        variant = session.shown.get("variant")
        return dict(self.p.conversion_by_variant).get(variant, 1.0) if variant else 1.0

    def _event(self, type_: str, shopper: Shopper, item_id: str, **extra: Any) -> dict[str, Any]:
        context = {**shopper.context(), "referrer": self.rng.choice(REFERRERS)}
        return self._catalog(type_, item_id, **shopper.ids(), context=context, **extra)

    def _catalog(self, type_: str, item_id: str, **extra: Any) -> dict[str, Any]:
        self._seq += 1
        run = f"{self.p.run}-" if self.p.run else ""
        event_id = f"sim-{self.p.seed}-{run}{self._seq}"
        return {"event_id": event_id, "type": type_, "ts": _iso(None), "item_id": item_id, **extra}


def _iso(epoch: float | None) -> str:
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat()
