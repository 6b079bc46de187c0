"""Before and after a rehearsal: the target checked, the run's catalog upserted, a first
list awaited; afterwards (`--retire`), the run's items taken out of stock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import httpx

from shopper.errors import ShopperError
from shopper.rehearsal.plan import Plan, Shopper
from shopper.rehearsal.probe import ProbeClient, read_list_id

CHUNK = 500  # items or events per request (the API takes up to max_batch, 1000 by default)


class RehearsalError(ShopperError):
    """The rehearsal cannot run: the target is unreachable, refuses its setup, or stops."""


async def check_target(http: httpx.AsyncClient, target: str) -> dict[str, Any]:
    """The target's `/healthz`, or a clear error if it is not a shopper API answering."""
    try:
        response = await http.get("/healthz")
    except httpx.HTTPError as exc:
        raise RehearsalError(
            f"cannot reach shopper at {target}: {exc or type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        raise RehearsalError(
            f"{target}/healthz answered HTTP {response.status_code}: is this a shopper API?"
        )
    health: dict[str, Any] = response.json()
    return health


async def upsert_catalog(http: httpx.AsyncClient, plan: Plan) -> None:
    """The run's own items, in stock (`PUT /v1/catalog/items`)."""
    items = plan.catalog()
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        response = await _call(http.put("/v1/catalog/items", json=chunk))
        if response.status_code != 202 or response.json().get("accepted") != len(chunk):
            raise RehearsalError(
                f"the target refused the rehearsal's catalog (HTTP {response.status_code}): "
                f"{response.text[:500]}"
            )


async def wait_ready(probes: ProbeClient, plan: Plan, timeout_s: float) -> float:
    """Seconds until a first shopper's list was written: the processor runs and has joined
    the stream (on Kafka, its consumer group), so the clock does not start on a cold
    server."""
    started = time.perf_counter()
    shopper = Shopper(None, f"{plan.run_id}-ready")
    before = await read_list_id(probes, shopper)
    now = _now_iso()
    body = [
        plan.event_body(shopper, "view", item, f"{plan.run_id}-ready{n}", now)
        for n, item in enumerate(plan.items[:3])
    ]
    response = await _call(probes.http.post("/v1/events", json=body))
    if response.status_code != 202:
        raise RehearsalError(
            f"the target refused an event (HTTP {response.status_code}): {response.text[:500]}"
        )
    while time.perf_counter() < started + timeout_s:
        if await read_list_id(probes, shopper) not in (before, None):
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise RehearsalError(
        f"the target accepted events but wrote no list for the shopper within {timeout_s:g} s: "
        "is a processor running on its stream (`shopper serve --role processor`, or --role all)?"
    )


async def retire_catalog(http: httpx.AsyncClient, plan: Plan) -> int:
    """Every item of the run out of stock, so the page filters them out of every list from
    now on: a rehearsal leaves nothing on the target's pages. Best effort: returns how
    many items the target took."""
    now = _now_iso()
    events = [
        {"event_id": f"{plan.run_id}-end{n}", "type": "stock_change", "ts": now,
         "item_id": item, "quantity": 0}
        for n, item in enumerate(plan.items)
    ]  # fmt: skip
    retired = 0
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        with suppress(httpx.HTTPError):
            response = await http.post("/v1/events", json=chunk)
            retired += len(chunk) if response.status_code == 202 else 0
    return retired


async def _call(call: Awaitable[httpx.Response]) -> httpx.Response:
    try:
        return await call
    except httpx.HTTPError as exc:
        raise RehearsalError(f"the target stopped answering during setup: {exc!r}") from None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
