"""The rehearsal's schedule: rates follow the phases, sell-outs hit the best sellers, the
viral item takes its share, nobody buys what sold out, and every event is valid."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from shopper.codec import parse_event
from shopper.rehearsal.plan import Plan, arrivals, phase_at, rate_at
from shopper.rehearsal.profile import Profile, load_profile


@pytest.fixture(scope="module")
def flash() -> Profile:
    return load_profile("flash-sale")


@pytest.fixture(scope="module")
def plan(flash: Profile) -> Plan:
    return Plan(flash, seed=3, run_id="rhtest")


def test_rates_follow_the_phases(flash: Profile) -> None:
    t = flash.traffic
    base, peak = t.base.events_per_s, t.peak.events_per_s
    assert rate_at(t, 0, "events") == base
    assert phase_at(t, 0) == "warmup"
    assert rate_at(t, t.warmup_s + t.ramp_s / 2, "events") == pytest.approx((base + peak) / 2)
    assert phase_at(t, t.warmup_s + 0.1) == "ramp"
    assert rate_at(t, t.warmup_s + t.ramp_s + 1, "events") == peak
    assert phase_at(t, t.warmup_s + t.ramp_s + 1) == "hold"
    assert rate_at(t, t.duration_s - 1e-9, "events") == pytest.approx(base, rel=1e-3)
    assert phase_at(t, t.duration_s - 0.1) == "cooldown"


def test_arrival_counts_match_the_rate_integral(flash: Profile) -> None:
    t = flash.traffic
    expected = t.base.pages_per_s * (
        t.warmup_s + t.ramp_s / 2 + t.cooldown_s / 2
    ) + t.peak.pages_per_s * (t.ramp_s / 2 + t.hold_s + t.cooldown_s / 2)
    times = arrivals(np.random.default_rng(1), t, "pages")
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)  # Poisson: 4 sigma
    assert times == sorted(times) and times[0] >= 0 and times[-1] < t.duration_s


def test_the_same_seed_gives_the_same_plan(flash: Profile, plan: Plan) -> None:
    again = Plan(flash, seed=3, run_id="rhtest")
    assert again.events == plan.events and again.pages == plan.pages
    assert Plan(flash, seed=4, run_id="rhtest").events != plan.events


def test_the_best_sellers_sell_out_in_the_window(flash: Profile, plan: Plan) -> None:
    assert flash.viral is not None and flash.viral.sell_out_s is not None
    viral = [s for s in plan.sell_outs if s.item == plan.viral_item]
    assert [s.at for s in viral] == [flash.viral.sell_out_s]
    others = [s for s in plan.sell_outs if s.item != plan.viral_item]
    assert len(others) == flash.sell_out.items
    assert {s.item for s in others} == set(plan.items[: flash.sell_out.items])
    assert min(s.at for s in others) == flash.sell_out.from_s
    assert max(s.at for s in others) == pytest.approx(flash.sell_out.to_s)


def test_nobody_buys_an_item_after_it_sold_out(plan: Plan) -> None:
    sold_at = {s.item: s.at for s in plan.sell_outs}
    buying = [e for e in plan.events if e.type in ("add_to_cart", "purchase")]
    assert buying
    assert not [e for e in buying if e.item in sold_at and e.at >= sold_at[e.item]]
    # ... though shoppers still look at them, as on a real shop
    assert [e for e in plan.events if e.type == "view" and e.at >= sold_at.get(e.item, 1e9)]


def test_the_viral_item_takes_its_share_of_browsing_once_it_took_off(
    flash: Profile, plan: Plan
) -> None:
    assert flash.viral is not None
    browsing = [e for e in plan.events if e.type in ("view", "click", "dwell")]
    before = [e for e in browsing if e.at < flash.viral.start_s]
    after = [e for e in browsing if e.at >= flash.viral.start_s]
    assert not [e for e in before if e.item == plan.viral_item]
    share = sum(e.item == plan.viral_item for e in after) / len(after)
    assert share == pytest.approx(flash.viral.view_share, abs=0.03)
    assert plan.items.index(plan.viral_item or "") >= len(plan.items) // 2  # from the tail


def test_the_mix_and_popularity(flash: Profile, plan: Plan) -> None:
    types = Counter(e.type for e in plan.events)
    weights = flash.mix.weights()
    total = sum(weights.values())
    for kind, weight in weights.items():
        assert types[kind] / len(plan.events) == pytest.approx(weight / total, abs=0.02)
    items = Counter(e.item for e in plan.events if e.item != plan.viral_item)
    assert items[plan.items[0]] > items[plan.items[50]] > 0  # Zipf: rank 0 the best seller


def test_shoppers_act_within_their_visit(flash: Profile, plan: Plan) -> None:
    visit = flash.shoppers.session_s
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    acts = [(e.shopper, e.at) for e in plan.events] + [(p.shopper, p.at) for p in plan.pages]
    for shopper, at in acts:
        first[shopper] = min(first.get(shopper, at), at)
        last[shopper] = max(last.get(shopper, at), at)
    assert max(last[s] - first[s] for s in first) <= visit
    assert len(first) > flash.shoppers.count / 2


def test_every_planned_event_is_valid(plan: Plan) -> None:
    seen = set()
    for n, e in enumerate(plan.events):
        if e.type in seen:
            continue
        seen.add(e.type)
        shopper = plan.shoppers[e.shopper]
        body = plan.event_body(shopper, e.type, e.item, f"id{n}", "2026-01-01T00:00:00+00:00")
        parse_event(body)
    assert seen == {k for k, w in plan.profile.mix.weights().items() if w > 0}
    signed = [s for s in plan.shoppers if s.user_id]
    assert 0 < len(signed) < len(plan.shoppers)


def test_the_catalog_is_in_stock_and_named_for_the_run(plan: Plan) -> None:
    catalog = plan.catalog()
    assert [i["item_id"] for i in catalog] == plan.items
    assert all(i["item_id"].startswith("rhtest-") and i["stock"] > 0 for i in catalog)
    assert all(plan.profile.catalog.price_min <= i["price"] <= plan.profile.catalog.price_max
               for i in catalog)  # fmt: skip
