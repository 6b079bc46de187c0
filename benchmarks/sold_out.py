"""Sold-out items on a live deployment: how long after its stock event a page still
shows an item that sold out (the freshness benchmark's second section).

The items shown on most pages of the shopper pool get a `stock_change` to quantity 0, one
at a time, while background events flow. Up to HOLDERS_PER_ITEM pages that showed the
item are read over and over, READ_CONNECTIONS at a time, for WINDOW_S after the stock
event's 202 (accepted). The figure per item is the end of the last read, started after the
202, that still showed it (0: none did); `accept_ms` is the stock event's own round trip.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from benchmarks.bench_keys import ADMIN
from benchmarks.http_load import run_async
from benchmarks.shop_traffic import ShopTraffic, client, pool_page, send
from shopper.domain.stats import percentile

EVENTS_PER_S = 1000  # background events/s while items sell out
WINDOW_S = 1.5  # pages are read this long after each stock event
HOLDERS_PER_ITEM = 40
READ_CONNECTIONS = 8


def measure(api: str, shoppers: int, count: int, warm_up_s: float, tag: str) -> dict[str, Any]:
    """The `count` items on most of the pool's pages go out of stock, one at a time, while
    EVENTS_PER_S background events flow; how long pages kept showing each."""
    with ShopTraffic(api, EVENTS_PER_S, shoppers, seed=7, tag=f"{tag}-so"):
        time.sleep(warm_up_s)
        items = run_async(_sell_out_items(api, shoppers, count, tag))
    served_ms = sorted(i["served_after_accept_ms"] for i in items)
    return {
        "items": len(items),
        "background_events_per_s": EVENTS_PER_S,
        "p50_ms": round(percentile(served_ms, 50), 1),
        "p99_ms": round(percentile(served_ms, 99), 1),
        "max_ms": round(served_ms[-1], 1) if served_ms else 0.0,
        "reads_after_accept": sum(i["reads_after_accept"] for i in items),
        "reads_showing_it_after_accept": sum(i["reads_showing_it"] for i in items),
        "accept_p99_ms": round(percentile([i["accept_ms"] for i in items], 99), 1),
        "per_item": items,
    }


async def _sell_out_items(api: str, shoppers: int, count: int, tag: str) -> list[dict[str, Any]]:
    async with client(api) as http:
        pages = await _read_all(http, [pool_page(n, shown=False) for n in range(shoppers)])
        holders: dict[str, list[str]] = {}
        for _, _, path, page in pages:
            for item in _ids(page):
                holders.setdefault(item, []).append(path)
        widest = sorted(holders, key=lambda item: -len(holders[item]))[:count]
        return [await _sell_out(http, i, holders[i][:HOLDERS_PER_ITEM], tag) for i in widest]


async def _sell_out(
    http: httpx.AsyncClient, item: str, holders: list[str], tag: str
) -> dict[str, Any]:
    """How long after its stock event's 202 a page still showed `item`: the end of the
    last read, started after the 202, that showed it (0: none did)."""
    shown_before = sum(item in _ids(page) for *_, page in await _read_all(http, holders))
    event = {
        "event_id": f"{tag}-stock-{item}",
        "type": "stock_change",
        "ts": datetime.now(UTC).isoformat(),
        "item_id": item,
        "quantity": 0,
    }
    sent = time.perf_counter()
    await send(http, "POST", "/v1/events", json=[event], headers=ADMIN)
    accepted = time.perf_counter()
    last_shown, reads, showing = accepted, 0, 0
    while time.perf_counter() - accepted < WINDOW_S:
        for started, done, _, page in await _read_all(http, holders):
            if started >= accepted:
                reads += 1
                if item in _ids(page):
                    showing += 1
                    last_shown = max(last_shown, done)
    return {
        "item": item,
        "holders": len(holders),
        "shown_before": shown_before,
        "accept_ms": round((accepted - sent) * 1000, 2),
        "served_after_accept_ms": round((last_shown - accepted) * 1000, 1),
        "reads_after_accept": reads,
        "reads_showing_it": showing,
    }


async def _read_all(
    http: httpx.AsyncClient, paths: list[str]
) -> list[tuple[float, float, str, dict[str, Any]]]:
    """(started, done, path, page) of each page, READ_CONNECTIONS at a time."""
    gate = asyncio.Semaphore(READ_CONNECTIONS)

    async def read(path: str) -> tuple[float, float, str, dict[str, Any]]:
        async with gate:
            started = time.perf_counter()
            response = await send(http, "GET", path)
            return started, time.perf_counter(), path, response.json()

    return list(await asyncio.gather(*(read(p) for p in paths)))


def _ids(page: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in page["items"]]


def conditions(count: int) -> str:
    return (
        f"the {count} items on most pages get a stock_change to quantity 0, one at a time, "
        f"while {EVENTS_PER_S} events/s flow; up to {HOLDERS_PER_ITEM} pages that showed the "
        f"item are read over and over for {WINDOW_S:g} s after the 202; the figure is the "
        "end of the last read, started after the 202, that still showed it (0: none did)"
    )
