"""Online feature reads on both of Feast's online stores: SQLite (embedded) and Redis.

Measures `read_user` (user_profile + session_context of one shopper) and `read_items` for
100 candidate items: the same requests on every store, interleaved request by request (the
stores' order rotating), p50/p99 per run, then the median of each over the runs, and the
ratio of Redis to SQLite. Also the push rate.
Redis: SHOPPER_BENCH_REDIS (default redis://127.0.0.1:6379/0), under a Feast project of the
benchmark's own, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shopper.adapters.feast_feature_store import FeastFeatureStore
from shopper.adapters.feast_repo import FeastSettings
from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.domain.features.spec import (
    PRODUCT_STATS,
    SESSION_CONTEXT,
    USER_PROFILE,
    FeatureRow,
)
from shopper.domain.stats import percentile
from shopper.ports.feature_store import FeatureStore

DEFINITIONS = Path(__file__).parents[1] / "feature_repo"
USERS = 5_000
ITEMS = 20_000
CANDIDATES = 100
READS = 1_000  # per run, per store and kind: a p99 of the 10 slowest, not the 4 slowest
WARM_UP = 50
RUNS = 5
T = 1_700_000_000.0


def run(redis_url: str | None = None) -> dict[str, Any]:
    redis_url = redis_url or os.environ.get("SHOPPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    project = f"bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, FeatureStore] = {
            "memory": InMemoryFeatureStore(),
            "sqlite": _feast(Path(tmp) / "sqlite", project, None),
            "redis": _feast(Path(tmp) / "redis", project, redis_url),
        }
        try:
            push_rate = {name: _fill(store) for name, store in stores.items()}
            runs = [_read_run(stores, seed) for seed in range(RUNS)]
        finally:
            redis_store = stores["redis"]
            assert isinstance(redis_store, FeastFeatureStore)
            redis_store.teardown()  # this project's keys only
            for store in stores.values():
                store.close()
    return {
        "online_read_ms": _medians(runs),
        "push_rows_per_s": push_rate,
        "runs": RUNS,
        "reads_per_run": READS,
        "note": f"user: one shopper's 2 views; items: {CANDIDATES} candidates of {ITEMS}; "
        "medians over runs of each run's p50/p99",
    }


def _feast(data_dir: Path, project: str, redis_url: str | None) -> FeastFeatureStore:
    store = FeastFeatureStore(FeastSettings(DEFINITIONS, data_dir, project, redis_url))
    store.apply()
    return store


def _fill(store: FeatureStore) -> float:
    """Push every user's and item's rows; returns rows per second."""
    rng = random.Random(1)
    rows = [row for u in range(USERS) for row in _user_rows(rng, u)]
    rows += [_item_row(rng, i) for i in range(ITEMS)]
    started = time.perf_counter()
    for start in range(0, len(rows), 2_000):
        store.push(rows[start : start + 2_000])
    return round(len(rows) / (time.perf_counter() - started))


def _user_rows(rng: random.Random, n: int) -> list[FeatureRow]:
    shares = {f"cat-{rng.randrange(50)}": rng.random() for _ in range(5)}
    recent = tuple(f"sku-{rng.randrange(ITEMS)}" for _ in range(20))
    profile = {
        "session_count_7d": rng.randrange(1, 9),
        "interaction_count": rng.randrange(200),
        "avg_cart_value": rng.random() * 100,
        "category_affinity": json.dumps(shares),
        "last_seen": T,
    }
    context = {
        "recent_item_ids": recent,
        "cart_item_ids": recent[:3],
        "category_interest": json.dumps(shares),
    }
    return [
        FeatureRow(USER_PROFILE.name, f"u:{n}", T, profile),
        FeatureRow(SESSION_CONTEXT.name, f"u:{n}", T, context),
    ]


def _item_row(rng: random.Random, n: int) -> FeatureRow:
    values = {
        "views_1h": rng.randrange(100),
        "purchases_24h": rng.randrange(10),
        "view_to_purchase_rate": rng.random(),
        "trending_score": rng.random() * 50,
        "price": round(rng.random() * 200, 2),
        "in_stock": rng.random() > 0.1,
        "age_hours": rng.random() * 5000,
    }
    return FeatureRow(PRODUCT_STATS.name, f"sku-{n}", T, values)


def _read_run(stores: dict[str, FeatureStore], seed: int) -> dict[str, dict[str, list[float]]]:
    """The same reads on every store, interleaved request by request, so a slow stretch of
    a noisy machine falls on all of them. (The Feast adapter's reads do not touch Feast's
    registry, whose process-wide single-entry cache two Feast stores used alternately
    would otherwise thrash, which no shopper process, with its one Feast store, does.)"""
    rng = random.Random(seed)
    requests = [
        (f"u:{rng.randrange(USERS)}", [f"sku-{rng.randrange(ITEMS)}" for _ in range(CANDIDATES)])
        for _ in range(WARM_UP + READS)
    ]
    names = list(stores)
    samples: dict[str, dict[str, list[float]]] = {n: {"user": [], "items_100": []} for n in names}
    for n, (user, candidates) in enumerate(requests):
        turn = n % len(names)
        for name in names[turn:] + names[:turn]:
            user_ms, items_ms = _timed_read(stores[name], user, candidates)
            if n >= WARM_UP:  # the first reads fill caches and open connections
                samples[name]["user"].append(user_ms)
                samples[name]["items_100"].append(items_ms)
    return samples


def _timed_read(store: FeatureStore, user: str, candidates: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    found = store.read_user(user)
    user_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    got = store.read_items(candidates)
    items_ms = (time.perf_counter() - started) * 1000
    assert len(found) == 2 and len(got) == len(set(candidates))
    return user_ms, items_ms


def _medians(runs: list[dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kinds in runs[0].items():
        out[name] = {}
        for kind in kinds:
            p50 = [percentile(r[name][kind], 50) for r in runs]
            p99 = [percentile(r[name][kind], 99) for r in runs]
            out[name][kind] = {
                "p50": round(statistics.median(p50), 3),
                "p99": round(statistics.median(p99), 3),
            }
    out["ratio_redis_to_sqlite"] = {
        kind: {q: round(out["redis"][kind][q] / out["sqlite"][kind][q], 2) for q in ("p50", "p99")}
        for kind in out["sqlite"]
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
