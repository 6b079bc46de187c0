"""A rehearsal's schedule, drawn up front from a profile and a seed: when each event is
posted and each page read, by whom, about which item; when items sell out.

Arrivals are a Poisson process whose rate follows the profile's phases (warm-up at the
base rate, ramp to the peak, hold, cool down), so the load is open-loop: it is sent on
schedule whatever the server does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shopper.rehearsal.profile import Profile, TrafficSpec

PHASES = ("warmup", "ramp", "hold", "cooldown")
Kind = Literal["events", "pages"]
BROWSING = frozenset({"view", "click", "dwell"})  # what a viral item draws
BUYING = frozenset({"add_to_cart", "purchase"})  # never of an item already sold out
CATEGORIES = ("fashion", "home", "electronics", "sports", "beauty", "toys", "garden", "books")


@dataclass(frozen=True, slots=True)
class Shopper:
    user_id: str | None
    session_id: str

    def ids(self) -> dict[str, str]:
        return {
            "session_id": self.session_id,
            **({"user_id": self.user_id} if self.user_id else {}),
        }


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    at: float  # seconds from the start
    shopper: int
    type: str
    item: str


@dataclass(frozen=True, slots=True)
class PlannedPage:
    at: float
    shopper: int
    context_item: str | None


@dataclass(frozen=True, slots=True)
class SellOut:
    at: float
    item: str


def phase_at(traffic: TrafficSpec, t: float) -> str:
    """The phase running `t` seconds from the start."""
    edge = 0.0
    for name, length in zip(PHASES, _lengths(traffic), strict=True):
        edge += length
        if t < edge:
            return name
    return PHASES[-1]


def rate_at(traffic: TrafficSpec, t: float, kind: Kind) -> float:
    """The planned rate (per second) of `kind` at `t`."""
    base = getattr(traffic.base, f"{kind}_per_s")
    peak = getattr(traffic.peak, f"{kind}_per_s")
    warmup, ramp, hold, cooldown = _lengths(traffic)
    if t < warmup:
        return float(base)
    if t < warmup + ramp:
        return float(base + (peak - base) * (t - warmup) / ramp)
    if t < warmup + ramp + hold:
        return float(peak)
    into = t - warmup - ramp - hold
    return float(peak + (base - peak) * min(1.0, into / cooldown)) if cooldown else float(peak)


def _lengths(traffic: TrafficSpec) -> tuple[float, float, float, float]:
    return traffic.warmup_s, traffic.ramp_s, traffic.hold_s, traffic.cooldown_s


def _category(index: int) -> list[str]:
    return [CATEGORIES[index % len(CATEGORIES)], f"c{index}"]


def arrivals(rng: np.random.Generator, traffic: TrafficSpec, kind: Kind) -> list[float]:
    """Arrival times of a Poisson process following `rate_at` (by thinning)."""
    top = max(getattr(traffic.base, f"{kind}_per_s"), getattr(traffic.peak, f"{kind}_per_s"))
    end = traffic.duration_s
    if top <= 0:
        return []
    n = int(top * end + 6 * math.sqrt(top * end) + 10)
    times = np.cumsum(rng.exponential(1.0 / top, n))
    times = times[times < end]
    keep = rng.random(len(times)) * top < [rate_at(traffic, float(t), kind) for t in times]
    return [float(t) for t in times[keep]]


def visit_starts(
    rng: np.random.Generator, traffic: TrafficSpec, count: int, visit_s: float
) -> np.ndarray:
    """Each shopper's visit start, sorted: more visits start while the rate is high, and
    some began before the run (shoppers already browsing when it starts)."""

    def load(t: float) -> float:
        return rate_at(traffic, max(t, 0.0), "events") + rate_at(traffic, max(t, 0.0), "pages")

    top = max(load(0.0), load(traffic.warmup_s + traffic.ramp_s))
    if top <= 0:
        return np.sort(rng.uniform(-visit_s, traffic.duration_s, count))
    starts: list[float] = []
    while len(starts) < count:
        drawn = rng.uniform(-visit_s, traffic.duration_s, count)
        keep = rng.random(count) * top <= [load(float(t)) for t in drawn]
        starts.extend(float(t) for t in drawn[keep])
    return np.sort(np.array(starts[:count]))


class Plan:
    """Everything the rehearsal will send, derived from (profile, seed, run id) alone."""

    def __init__(self, profile: Profile, seed: int, run_id: str) -> None:
        self.profile = profile
        self.seed = seed
        self.run_id = run_id
        self._rng = np.random.default_rng(seed)
        cat = profile.catalog
        self.items = [f"{run_id}-i{n:05d}" for n in range(cat.items)]
        weights = 1.0 / np.arange(1, cat.items + 1) ** cat.popularity_skew
        self._popularity = weights / weights.sum()
        # Rank 0 is the most popular item. The viral item comes from the bottom half: it
        # was nothing special before it took off.
        self.viral_item = (
            self.items[int(self._rng.integers(cat.items // 2, cat.items))]
            if profile.viral
            else None
        )
        self._by_category = [
            np.arange(c, cat.items, cat.categories) for c in range(min(cat.categories, cat.items))
        ]
        signed_in = self._rng.random(profile.shoppers.count) < profile.shoppers.signed_in_share
        self.shoppers = [
            Shopper(f"{run_id}-u{n}" if signed else None, f"{run_id}-s{n}")
            for n, signed in enumerate(signed_in.tolist())
        ]
        visit_s = profile.shoppers.session_s
        self._visits = visit_starts(self._rng, profile.traffic, len(self.shoppers), visit_s)
        self.sell_outs = self._sell_outs()
        self._sold_at = {s.item: s.at for s in self.sell_outs}
        self.events = self._events()
        self.pages = self._pages()

    @property
    def duration_s(self) -> float:
        return self.profile.duration_s

    def catalog(self) -> list[dict[str, Any]]:
        """The items to upsert before the run (`PUT /v1/catalog/items`), all in stock."""
        cat = self.profile.catalog
        prices = self._rng.uniform(cat.price_min, cat.price_max, cat.items)
        return [
            {
                "item_id": item, "title": f"rehearsal item {n}",
                "category": _category(n % cat.categories),
                "price": round(float(prices[n]), 2), "stock": cat.stock,
            }
            for n, item in enumerate(self.items)
        ]  # fmt: skip

    def _sell_outs(self) -> list[SellOut]:
        spec = self.profile.sell_out
        popular = [i for i in self.items if i != self.viral_item][: spec.items]
        step = (spec.to_s - spec.from_s) / max(1, spec.items - 1)
        out = [SellOut(spec.from_s + step * n, item) for n, item in enumerate(popular)]
        viral = self.profile.viral
        if viral is not None and viral.sell_out_s is not None and self.viral_item:
            out.append(SellOut(viral.sell_out_s, self.viral_item))
        return sorted(out, key=lambda s: s.at)

    def _events(self) -> list[PlannedEvent]:
        mix = self.profile.mix.weights()
        types, weights = list(mix), np.array(list(mix.values()))
        times = arrivals(self._rng, self.profile.traffic, "events")
        chosen = self._rng.choice(len(types), size=len(times), p=weights / weights.sum())
        who = self._visitors(times)
        return [
            PlannedEvent(t, int(s), types[c], self.pick_item(self._rng, int(s), t, types[c]))
            for t, c, s in zip(times, chosen.tolist(), who.tolist(), strict=True)
        ]

    def _pages(self) -> list[PlannedPage]:
        traffic = self.profile.traffic
        times = arrivals(self._rng, traffic, "pages")
        who = self._visitors(times)
        product = self._rng.random(len(times)) < traffic.product_page_share
        return [
            PlannedPage(t, int(s), self.pick_item(self._rng, int(s), t, "view") if p else None)
            for t, s, p in zip(times, who.tolist(), product.tolist(), strict=True)
        ]

    def _visitors(self, times: list[float]) -> np.ndarray:
        """For each time, a shopper whose visit it falls in (at random among them); if
        nobody is visiting then, the next shopper to arrive."""
        at = np.asarray(times, dtype=float)
        first = np.searchsorted(self._visits, at - self.profile.shoppers.session_s, "right")
        end = np.searchsorted(self._visits, at, "right")
        inside = first + np.floor(self._rng.random(len(at)) * (end - first)).astype(int)
        return np.where(end > first, inside, np.minimum(end, len(self._visits) - 1))

    def pick_item(self, rng: np.random.Generator, shopper: int, t: float, kind: str) -> str:
        """The item a shopper's `kind` event (or product page, as "view") at `t` is about:
        the viral item for its share of browsing once it has taken off; else by
        popularity, in the shopper's favourite category for the profile's `taste` share;
        never an item already sold out for a cart or a purchase."""
        if self._viral_draw(rng, t, kind) and self.viral_item:
            return self.viral_item
        for _ in range(20):
            item = self._draw(rng, shopper)
            if not self._sold_out(item, t, kind):
                return item
        return next(i for i in self.items if not self._sold_out(i, t, kind))

    def _viral_draw(self, rng: np.random.Generator, t: float, kind: str) -> bool:
        viral = self.profile.viral
        if viral is None or kind not in BROWSING or t < viral.start_s:
            return False
        return bool(rng.random() < viral.view_share)

    def _draw(self, rng: np.random.Generator, shopper: int) -> str:
        if rng.random() < self.profile.shoppers.taste:
            rows = self._by_category[shopper % len(self._by_category)]
            p = self._popularity[rows]
            return self.items[int(rows[int(rng.choice(len(rows), p=p / p.sum()))])]
        return self.items[int(rng.choice(len(self.items), p=self._popularity))]

    def _sold_out(self, item: str, t: float, kind: str) -> bool:
        at = self._sold_at.get(item)
        return kind in BUYING and at is not None and t >= at

    def event_body(
        self, shopper: Shopper, kind: str, item: str, event_id: str, ts: str
    ) -> dict[str, Any]:
        """One event in the API's wire format (`shopper.codec.EventIn`)."""
        body: dict[str, Any] = {"event_id": event_id, "type": kind, "ts": ts, "item_id": item}
        body.update(shopper.ids())
        if kind == "purchase":
            body["quantity"] = 1
        elif kind == "dwell":
            body["dwell_ms"] = 15_000
        return body
