"""Every Redis key shopper writes expires, or is one of the keys docs/redis-keys.md lists
with a bound that no client controls.

A shop's worth of traffic (catalog, views, carts, purchases, stock changes, page reads
with their impressions) goes through a real system on Redis; then every key under the
test's prefix is matched against the documented key tables: a key the docs say has a TTL
must have one in Redis, a key without one must be documented as bounded, and a key the
docs do not name fails the test.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.services.runtime import ApiServer

pytestmark = pytest.mark.redis

DOC = Path(__file__).resolve().parents[2] / "docs" / "redis-keys.md"
ADMIN = "redis-key-bounds-admin-token"
WAIT_S = 20.0


def documented_keys() -> dict[str, bool]:
    """Key pattern (a regex) -> whether the docs give it a TTL, from the key tables."""
    found: dict[str, bool] = {}
    for line in DOC.read_text().splitlines():
        row = re.match(r"^\| `([^`]+)` \|[^|]*\|[^|]*\| (.+) \|$", line)
        if row is None:
            continue
        name, ttl = row.groups()
        pattern = re.sub(r"<[^>]+>", ".+", re.escape(name))
        found[pattern] = not ttl.lower().startswith("none")
    return found


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def event(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{kind}-{n}-{uuid.uuid4().hex[:6]}",
        "type": kind,
        "ts": now_iso(),
    } | fields


@pytest.fixture
def shop(redis_url: str, tmp_path: Path) -> Iterator[tuple[System, httpx.Client, str]]:
    prefix = f"bounds-{uuid.uuid4().hex[:6]}:"
    config = load_config(
        {},
        cache_url=redis_url,
        redis_key_prefix=prefix,
        data_dir=tmp_path,
        admin_token=ADMIN,
        microbatch_wait_s=0.01,
        popular_refresh_s=0.1,
    )
    system = build_system(config)
    try:
        system.start_processor()
        with (
            ApiServer(system.app()) as url,
            httpx.Client(
                base_url=url, timeout=10, headers={"authorization": f"Bearer {ADMIN}"}
            ) as http,
        ):
            yield system, http, prefix
    finally:
        system.close()


def test_every_key_has_a_ttl_or_a_documented_bound(
    shop: tuple[System, httpx.Client, str], redis_url: str
) -> None:
    _, http, prefix = shop
    items = [{"item_id": f"i{n}", "title": f"Item {n}", "stock": 5} for n in range(10)]
    assert http.put("/v1/catalog/items", json=items).status_code == 202
    events = []
    for n in range(30):
        who = {"user_id": f"u{n}"} if n % 2 else {"session_id": f"s{n}"}
        context = {"country": "de", "device": "mobile"}
        events += [
            event("view", n, item_id=f"i{n % 10}", context=context, **who),
            event("view", n + 100, item_id=f"i{(n + 1) % 10}", **who),
            event("add_to_cart", n, item_id=f"i{n % 10}", **who),
        ]
        if n % 3 == 0:
            events.append(event("purchase", n, item_id=f"i{n % 10}", price=9.5, **who))
    events.append(event("stock_change", 0, item_id="i3", quantity=0))
    assert http.post("/v1/events", json=events).status_code == 202
    expected = len(events)
    deadline = time.monotonic() + WAIT_S
    # Taken in: applied by this process's processor, or found applied already (a fresh
    # Redis state has no marker, so the catalog is replayed beside it: services/state_rebuild).
    while (stats := http.get("/v1/stats").json())["applied"] + stats["duplicates"] < expected:
        assert time.monotonic() < deadline, "the processor did not apply the events"
        time.sleep(0.05)
    for n in range(30):  # pages, and the impressions they record
        who = {"user_id": f"u{n}"} if n % 2 else {"session_id": f"s{n}"}
        assert http.get("/v1/recommendations", params=who).status_code == 200
    assert http.get("/v1/items/i1/similar").status_code == 200
    http.get("/v1/experiments")
    time.sleep(0.5)  # the impressions applied, a popular refresh written

    client = redis.Redis.from_url(redis_url)
    try:
        keys = {k.decode(): cast(int, client.pttl(k)) for k in client.scan_iter(f"{prefix}*")}
    finally:
        client.close()
    documented = documented_keys()
    assert documented, f"no key tables found in {DOC}"
    kinds: dict[str, str] = {}
    for key, ttl_ms in keys.items():
        name = key.removeprefix(prefix)
        matches = [p for p in documented if re.fullmatch(p, name)]
        assert matches, f"{name} is not documented in docs/redis-keys.md"
        pattern = max(matches, key=len)  # `hits:<segment>` rather than a shorter match
        kinds[pattern] = name
        if documented[pattern]:
            assert ttl_ms > 0, f"{name}: the docs give it a TTL, Redis has none ({ttl_ms})"
    # The workload reached the keys that grow with shoppers; each of them expires.
    for growing in ("session:.+", "list:.+:.+", "fresh:.+:.+", "applied:.+", "outcome:.+"):
        assert growing in kinds, f"the workload wrote no {growing} key: {sorted(keys)}"
        assert documented[growing]
    print(f"\n{len(keys)} keys of {len(kinds)} kinds: every one expires or is bounded")
