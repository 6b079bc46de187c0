"""Synthetic shopper events for benchmarks: seeded, with category structure."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

CATEGORIES = 20  # item i is in category i % CATEGORIES


def shopper_events(
    users: int, events_per_user: int, items: int, seed: int = 1, id_prefix: str = ""
) -> list[dict[str, Any]]:
    """Views, carts and purchases of `users` shoppers, each browsing two categories.
    `id_prefix` sets another seed's shoppers apart (their ids start with it)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).timestamp()
    events = []
    for u in range(users):
        taste = rng.sample(range(CATEGORIES), 2)
        for e in range(events_per_user):
            category = rng.choice(taste)
            item = category + CATEGORIES * min(
                int(rng.paretovariate(1.2)) - 1, items // CATEGORIES - 1
            )
            kind = rng.choices(["view", "add_to_cart", "purchase"], [0.85, 0.1, 0.05])[0]
            events.append(
                {
                    "event_id": f"bench-{seed}-{id_prefix}{u}-{e}",
                    "type": kind,
                    "ts": datetime.fromtimestamp(now + e, UTC).isoformat(),
                    "user_id": f"{id_prefix}u{u}",
                    "session_id": f"{id_prefix}s{u}",
                    "item_id": f"i{item}",
                    "context": {"country": rng.choice(["gb", "de", "fr"]), "device": "mobile"},
                }
            )
    rng.shuffle(events)
    # One shopper's events in time order, as a real stream has them.
    events.sort(key=lambda ev: ev["ts"])
    return events


def catalog_events(items: int, seed: int = 1) -> list[dict[str, Any]]:
    """An `item_upsert` per item: category, brand, price, stock (one in 50 sold out)."""
    rng = random.Random(seed)
    ts = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": f"catalog-{seed}-{i}",
            "type": "item_upsert",
            "ts": ts,
            "item": {
                "item_id": f"i{i}",
                "title": f"Item {i}",
                "category": ["shop", f"c{i % CATEGORIES}"],
                "brand": f"b{i % 37}",
                "price": round(rng.uniform(5.0, 200.0), 2),
                "stock": 0 if rng.random() < 0.02 else rng.randint(1, 50),
            },
        }
        for i in range(items)
    ]


def with_catalog_changes(
    events: list[dict[str, Any]], items: int, every: int = 100, seed: int = 1
) -> list[dict[str, Any]]:
    """`events` with a stock or price change after every `every`-th: popular items sell
    out and come back, prices drop and recover, as during a sale."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n, event in enumerate(events, 1):
        out.append(event)
        if n % every:
            continue
        # Drawn as the shoppers draw theirs: mostly the head of each category.
        rank = min(int(rng.paretovariate(1.2)) - 1, items // CATEGORIES - 1)
        item = f"i{rng.randrange(CATEGORIES) + CATEGORIES * rank}"
        change: dict[str, Any] = {"event_id": f"change-{seed}-{n}", "ts": event["ts"]}
        if rng.random() < 0.5:
            change.update(type="stock_change", item_id=item, quantity=rng.choice([0, 0, 5, 20]))
        else:
            change.update(type="price_change", item_id=item, price=round(rng.uniform(5, 200), 2))
        out.append(change)
    return out
