"""Freshness probes: dedicated shoppers that post one event at a time and re-read their
page until it shows a new list.

A probe shopper gets events from its probe only, and the processor writes a shopper's
list (with a new `list_id`) only when one of their own events is applied. So the first
read after the event's 202 whose `list_id` differs from the one read just before the
event shows a list made after that event. A probe whose list did not change within the
timeout is retired for a new shopper, so a late write cannot pass for the next event's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import numpy as np

from shopper.rehearsal.plan import Plan, Shopper
from shopper.rehearsal.tally import FreshnessTally, SoldOutWatch


class RunContext(Protocol):
    """What a probe needs from the running rehearsal (`driver.Rehearsal`)."""

    freshness: FreshnessTally
    sold_out: SoldOutWatch
    plan: Plan

    def now(self) -> float: ...
    def answered(self) -> float: ...
    def failed_call(self) -> None: ...
    def event_id(self) -> str: ...
    def wall_iso(self, at: float) -> str: ...


@dataclass(frozen=True, slots=True)
class ProbeClient:
    """The probes' own connections, so the load's queue never delays a probe's reads."""

    http: httpx.AsyncClient
    run: RunContext


async def read_list_id(client: ProbeClient, shopper: Shopper) -> str | None:
    """The `list_id` the shopper's page shows now (None if the read failed). Every item
    shown is checked against the sold-out items, as any page's are."""
    run = client.run
    # A probe's read is not a page shown: no impression (it would add to the load).
    params: dict[str, Any] = {**shopper.ids(), "k": run.plan.profile.traffic.k}
    params["impression"] = "false"
    started = run.now()
    try:
        response = await client.http.get("/v1/recommendations", params=params)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        run.failed_call()
        return None
    run.answered()
    if body is None:
        return None
    run.freshness.page_reads += 1
    run.sold_out.check([i["item_id"] for i in body.get("items", [])], started)
    return str(body.get("list_id", ""))


class FreshnessProbe:
    """One probe: every `interval_s` (jittered), one event and the wait for its list."""

    def __init__(self, client: ProbeClient, index: int, plan: Plan) -> None:
        self._client = client
        self._run = client.run
        self._index = index
        self._plan = plan
        self._spec = plan.profile.freshness
        self._rng = np.random.default_rng([plan.seed, index])
        weights = plan.profile.mix.weights()
        self._types = list(weights)
        total = sum(weights.values())
        self._p = [w / total for w in weights.values()]

    async def run(self) -> None:
        generation = 0
        next_at = float(self._rng.uniform(0, self._spec.interval_s))
        while next_at < self._plan.duration_s:
            delay = next_at - self._run.now()
            if delay > 0:
                await asyncio.sleep(delay)
            if await self._measure(self._shopper(generation)) == "stale":
                generation += 1
            jitter = float(self._rng.uniform(0.5, 1.5))
            next_at = self._run.now() + self._spec.interval_s * jitter

    def _shopper(self, generation: int) -> Shopper:
        stem = f"{self._plan.run_id}-p{self._index}.{generation}"
        # Odd probes are signed in: both ways of keying a shopper's list are measured.
        return Shopper(f"{stem}u" if self._index % 2 else None, f"{stem}s")

    async def _measure(self, shopper: Shopper) -> str:
        run, tally = self._run, self._run.freshness
        before = await read_list_id(self._client, shopper)
        if before is None:
            tally.failed += 1
            return "failed"
        kind = self._types[int(self._rng.choice(len(self._types), p=self._p))]
        item = self._plan.pick_item(self._rng, self._index, run.now(), kind)
        event = self._plan.event_body(shopper, kind, item, run.event_id(), run.wall_iso(run.now()))
        try:
            response = await self._client.http.post("/v1/events", json=event)
        except httpx.HTTPError:
            run.failed_call()
            tally.failed += 1
            return "failed"
        if response.status_code != 202:
            tally.failed += 1
            return "failed"
        accepted_at = run.answered()
        while run.now() < accepted_at + self._spec.timeout_s:
            await asyncio.sleep(self._spec.poll_ms / 1000)
            list_id = await read_list_id(self._client, shopper)
            if list_id is not None and list_id != before:
                # Timed at the read's answer: late by at most a poll interval and a read.
                tally.delays_s.append(run.now() - accepted_at)
                return "fresh"
        tally.stale += 1
        return "stale"
