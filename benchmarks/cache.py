"""The page path: cache reads (direct and over HTTP) and the Redis bytes of one user list."""

from __future__ import annotations

import http.client
import random
import statistics
import time
import uuid
from typing import Any

from shopper.domain.event import StockChange
from shopper.domain.recommendation import RecommendationList, ScoredItem, Source
from shopper.domain.segment import popularity_segments
from shopper.domain.stats import percentile
from shopper.ports.cache import ListKey, RecommendationCache

LIST_SIZE = 50


def _list(rng: random.Random, n: int = LIST_SIZE) -> RecommendationList:
    items = tuple(ScoredItem(f"sku-{rng.randrange(100_000):06d}", rng.random()) for _ in range(n))
    return RecommendationList(items, "champion", Source.PERSONALIZED, time.time(), uuid.uuid4().hex)


def fill(cache: RecommendationCache, users: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    batch = [(ListKey(f"u:{u}", "champion"), _list(rng)) for u in range(users)]
    for start in range(0, len(batch), 500):
        cache.write_lists(batch[start : start + 500])
    for segment in ["country:gb", "device:mobile", "global"]:
        cache.write_popular(segment, _list(rng))
    gone = [f"sku-{rng.randrange(100_000):06d}" for _ in range(2000)]
    cache.set_stock([StockChange(item, False, time.time()) for item in gone])


def read_latencies(
    caches: dict[str, RecommendationCache], users: int, reads: int
) -> dict[str, Any]:
    """read_page p50/p99 (ms) per cache, interleaved so both see the same machine noise."""
    rng = random.Random(5)
    samples: dict[str, list[float]] = {name: [] for name in caches}
    segments = popularity_segments("gb", "mobile")
    for _ in range(reads):
        key = ListKey(f"u:{rng.randrange(users)}", "champion")
        for name, cache in caches.items():
            started = time.perf_counter()
            cache.read_page(key, segments)
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: _summary(values) for name, values in samples.items()}


def http_latencies(urls: dict[str, str], users: int, reads: int) -> dict[str, Any]:
    """GET /v1/recommendations round trips (ms) per server, interleaved."""
    rng = random.Random(7)
    conns = {name: http.client.HTTPConnection(*_host_port(url)) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(reads):
        query = f"/v1/recommendations?user_id=u{rng.randrange(users)}&k=10&country=gb&device=mobile"
        for name, conn in conns.items():
            started = time.perf_counter()
            conn.request("GET", query)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{name}: GET answered {response.status}")
            samples[name].append((time.perf_counter() - started) * 1000)
    for conn in conns.values():
        conn.close()
    return {name: _summary(values) for name, values in samples.items()}


def bytes_per_list(cache: Any, users: int) -> dict[str, float]:
    """Median Redis bytes of one stored 50-item user list (value, and MEMORY USAGE)."""
    prints = [
        cache.footprint(ListKey(f"u:{u}", "champion"))
        for u in range(0, users, max(users // 200, 1))
    ]
    prints = [p for p in prints if p is not None]
    return {
        "items_per_list": LIST_SIZE,
        "value_bytes_median": statistics.median(p.value_bytes for p in prints),
        "redis_memory_bytes_median": statistics.median(p.total for p in prints),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3)}


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Remove a benchmark's Redis keys."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()
