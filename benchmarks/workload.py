"""Synthetic shopper events for benchmarks: seeded, with category structure."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any


def shopper_events(
    users: int, events_per_user: int, items: int, seed: int = 1
) -> list[dict[str, Any]]:
    """Views, carts and purchases of `users` shoppers, each browsing two categories."""
    rng = random.Random(seed)
    categories = 20
    now = datetime.now(UTC).timestamp()
    events = []
    for u in range(users):
        taste = rng.sample(range(categories), 2)
        for e in range(events_per_user):
            category = rng.choice(taste)
            item = category + categories * min(
                int(rng.paretovariate(1.2)) - 1, items // categories - 1
            )
            kind = rng.choices(["view", "add_to_cart", "purchase"], [0.85, 0.1, 0.05])[0]
            events.append(
                {
                    "event_id": f"bench-{seed}-{u}-{e}",
                    "type": kind,
                    "ts": datetime.fromtimestamp(now + e, UTC).isoformat(),
                    "user_id": f"u{u}",
                    "session_id": f"s{u}",
                    "item_id": f"i{item}",
                    "context": {"country": rng.choice(["gb", "de", "fr"]), "device": "mobile"},
                }
            )
    rng.shuffle(events)
    # One shopper's events in time order, as a real stream has them.
    events.sort(key=lambda ev: ev["ts"])
    return events
