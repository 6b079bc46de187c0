"""Drives a running shopper API over HTTP with a plan, and measures what a shop would see.

Only the public HTTP API is used. Sends are open-loop: each request goes out at its
scheduled time on its own task, and page latency runs from the scheduled time, so a
server that falls behind shows its queue in the numbers instead of slowing the load.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx

from shopper.domain.stats import percentile
from shopper.rehearsal.plan import (
    Plan,
    PlannedEvent,
    PlannedPage,
    SellOut,
    phase_at,
    rate_at,
)
from shopper.rehearsal.probe import FreshnessProbe, ProbeClient
from shopper.rehearsal.setup import (
    RehearsalError,
    check_target,
    retire_catalog,
    upsert_catalog,
    wait_ready,
)
from shopper.rehearsal.tally import EventTally, FreshnessTally, PageTally, SoldOutWatch, summary_ms
from shopper.rehearsal.transport import LeanTransport

PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True, slots=True)
class RehearsalOptions:
    target: str = "http://127.0.0.1:8000"
    concurrency: int = 64  # connections for the load; pages beyond wait (and it shows)
    timeout_s: float = 10.0  # per request
    ready_timeout_s: float = 30.0  # for the target's first list to be written
    lost_after_s: float = 10.0  # no answer at all for this long ends the run
    retire: bool = False  # afterwards, every item of the run out of stock
    # The rehearsal writes the catalog and sells items out: it needs the admin token, which
    # takes every route. With only an ingest key, the catalog upsert is refused (403).
    admin_token: str | None = None
    ingest_key: str | None = None

    def headers(self) -> dict[str, str]:
        key = self.admin_token or self.ingest_key
        return {"authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for the live display."""

    elapsed_s: float
    duration_s: float
    phase: str
    events_per_s: float  # planned at this moment
    pages_per_s: float
    pages: int
    page_p99_ms: float | None
    events_accepted: int
    fresh: int
    stale: int
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    sold_out_served: int
    errors: int
    in_flight: int


ProgressHook = Callable[[Progress], None]
Send = Callable[[], Coroutine[Any, Any, None]]


class Rehearsal:
    """One run of a plan against one target. `transport` replaces the network (tests)."""

    def __init__(
        self,
        plan: Plan,
        options: RehearsalOptions,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.plan = plan
        self.options = options
        self._transport = transport
        self.pages = PageTally()
        self.events = EventTally()
        self.freshness = FreshnessTally()
        self.sold_out = SoldOutWatch(
            [s.item for s in plan.sell_outs], plan.profile.sell_out.grace_ms / 1000
        )
        self.stock_failures = 0
        self._lags_s: list[float] = []
        self._ids = itertools.count()
        self._in_flight: set[asyncio.Task[None]] = set()
        # At most `concurrency` requests of the load at once, a connection each; the rest
        # queue here when the server is slow, and their wait is in their latency.
        self._slots = asyncio.Semaphore(options.concurrency)
        self._t0 = time.perf_counter()
        self._wall0 = time.time()
        self._last_answer = 0.0
        self._last_failure = 0.0
        self._health: dict[str, Any] = {}
        self._ready_s = 0.0
        self._cpu_share = 0.0
        self._retired = 0

    def now(self) -> float:
        """Seconds since the run's start (client clock)."""
        return time.perf_counter() - self._t0

    async def run(self, on_progress: ProgressHook | None = None) -> dict[str, Any]:
        """Check the target, upsert the catalog, wait for a first list, run the plan."""
        # The probes have connections of their own: the load's queue never delays them.
        async with self._client() as http, self._client() as probe_http:
            probes = ProbeClient(probe_http, self)
            self._health = await check_target(http, self.options.target)
            await upsert_catalog(http, self.plan)
            self._ready_s = await wait_ready(probes, self.plan, self.options.ready_timeout_s)
            self._t0, self._wall0 = time.perf_counter(), time.time()
            cpu = time.process_time()
            await self._drive(http, probes, on_progress)
            elapsed = self.now()
            self._cpu_share = (time.process_time() - cpu) / elapsed
            if self.options.retire:
                self._retired = await retire_catalog(http, self.plan)
        return self.report(elapsed)

    def _client(self) -> httpx.AsyncClient:
        # https:// goes through httpx's own pool: TLS works, at more CPU per request.
        lean = None if self.options.target.startswith("https:") else LeanTransport()
        return httpx.AsyncClient(
            base_url=self.options.target,
            timeout=self.options.timeout_s,
            transport=self._transport or lean,
            limits=httpx.Limits(max_connections=self.options.concurrency + 16),
            headers=self.options.headers(),
        )

    async def _drive(
        self, http: httpx.AsyncClient, probes: ProbeClient, on_progress: ProgressHook | None
    ) -> None:
        spec = self.plan.profile.freshness
        try:
            async with asyncio.TaskGroup() as group:
                work = [group.create_task(self._schedule(http))]
                work += [
                    group.create_task(FreshnessProbe(probes, n, self.plan).run())
                    for n in range(spec.probes)
                ]
                group.create_task(self._watch(work, on_progress))
        except* RehearsalError as errors:
            raise errors.exceptions[0] from None

    async def _schedule(self, http: httpx.AsyncClient) -> None:
        for at, send in self._timeline(http):
            delay = at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            self._lags_s.append(max(0.0, self.now() - at))
            task = asyncio.create_task(self._bounded(send()))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        await asyncio.gather(*self._in_flight)

    async def _bounded(self, send: Coroutine[Any, Any, None]) -> None:
        async with self._slots:
            await send

    def _timeline(self, http: httpx.AsyncClient) -> list[tuple[float, Send]]:
        """Every send of the run, by time; each makes its coroutine when it is due."""
        sends: list[tuple[float, Send]] = [
            (p.at, partial(self._read_page, http, p)) for p in self.plan.pages
        ]
        sends += [(s.at, partial(self._sell_out, http, s)) for s in self.plan.sell_outs]
        sends += [(b[-1].at, partial(self._post_events, http, b)) for b in self._batches()]
        sends.sort(key=lambda pair: pair[0])
        return sends

    def _batches(self) -> list[list[PlannedEvent]]:
        """Events due within one `batch_ms` window go in one POST, sent at the last one's
        time (as a frontend's beacon batching would): no event leaves before it is due."""
        window = self.plan.profile.traffic.batch_ms / 1000
        batches: list[list[PlannedEvent]] = []
        for event in self.plan.events:
            if batches and event.at < batches[-1][0].at + window:
                batches[-1].append(event)
            else:
                batches.append([event])
        return batches

    async def _read_page(self, http: httpx.AsyncClient, page: PlannedPage) -> None:
        shopper = self.plan.shoppers[page.shopper]
        params: dict[str, Any] = {**shopper.ids(), "k": self.plan.profile.traffic.k}
        if page.context_item:
            params["context_item"] = page.context_item
        started = self.now()
        try:
            response = await http.get("/v1/recommendations", params=params)
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            self.pages.failed(type(exc).__name__)
            self.failed_call()
            return
        done = self.answered()
        phase = phase_at(self.plan.profile.traffic, page.at)
        self.pages.answered(phase, done - page.at, response.status_code, body.get("source"))
        self.pages.server_time(response.headers.get("server-timing"))
        self.sold_out.check([i["item_id"] for i in body.get("items", [])], started)

    async def _post_events(self, http: httpx.AsyncClient, batch: list[PlannedEvent]) -> None:
        plan = self.plan
        bodies = [
            plan.event_body(plan.shoppers[e.shopper], e.type, e.item, self.event_id(),
                            self.wall_iso(e.at))
            for e in batch
        ]  # fmt: skip
        self.events.posts += 1
        self.events.sent += len(bodies)
        try:
            response = await http.post("/v1/events", json=bodies)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.events.errors[type(exc).__name__] += 1
            self.failed_call()
            return
        self.events.latencies_s.append(self.answered() - batch[-1].at)
        self._count_ingest(response.status_code, body)

    def _count_ingest(self, status: int, body: dict[str, Any]) -> None:
        if status in (202, 422, 429):
            self.events.accepted += int(body.get("accepted", 0))
            self.events.rejected += len(body.get("rejected", []))
            self.events.throttled += len(body.get("not_accepted", []))
        else:
            self.events.errors[f"HTTP {status}"] += 1

    async def _sell_out(self, http: httpx.AsyncClient, sell_out: SellOut) -> None:
        event = {
            "event_id": self.event_id(), "type": "stock_change", "ts": self.wall_iso(sell_out.at),
            "item_id": sell_out.item, "quantity": 0,
        }  # fmt: skip
        self.sold_out.sending(sell_out.item, self.now())
        try:
            response = await http.post("/v1/events", json=event)
            accepted = response.status_code == 202 and response.json().get("accepted") == 1
        except (httpx.HTTPError, ValueError):
            self.failed_call()
            accepted = False
        if accepted:
            self.sold_out.accepted(sell_out.item, self.answered())
        else:
            self.sold_out.failed(sell_out.item)
            self.stock_failures += 1

    async def _watch(
        self, work: list[asyncio.Task[None]], on_progress: ProgressHook | None
    ) -> None:
        while not all(task.done() for task in work):
            await asyncio.sleep(PROGRESS_EVERY_S)
            now = self.now()
            silent = now - self._last_answer
            if self._last_failure > self._last_answer and silent > self.options.lost_after_s:
                raise RehearsalError(
                    f"the target stopped answering: no response for {silent:.0f} s "
                    f"({self.options.target})"
                )
            if on_progress is not None:
                on_progress(self.progress(now))

    def answered(self) -> float:
        """Note that the target answered; returns the time."""
        self._last_answer = self.now()
        return self._last_answer

    def failed_call(self) -> None:
        self._last_failure = self.now()

    def event_id(self) -> str:
        return f"{self.plan.run_id}-e{next(self._ids)}"

    def wall_iso(self, at: float) -> str:
        """The wall-clock time of run time `at`, as an event's `ts`."""
        return datetime.fromtimestamp(self._wall0 + at, UTC).isoformat()

    def progress(self, now: float) -> Progress:
        traffic = self.plan.profile.traffic
        fresh = self.freshness.delays_s
        return Progress(
            elapsed_s=now, duration_s=self.plan.duration_s, phase=phase_at(traffic, now),
            events_per_s=rate_at(traffic, now, "events"),
            pages_per_s=rate_at(traffic, now, "pages"),
            pages=self.pages.sent, page_p99_ms=_p_ms(self.pages.latencies_s, 99),
            events_accepted=self.events.accepted,
            fresh=len(fresh), stale=self.freshness.stale,
            freshness_p50_ms=_p_ms(fresh, 50), freshness_p99_ms=_p_ms(fresh, 99),
            sold_out_served=self.sold_out.served,
            errors=sum(self.pages.errors.values()) + sum(self.events.errors.values()),
            in_flight=len(self._in_flight),
        )  # fmt: skip

    def report(self, elapsed_s: float) -> dict[str, Any]:
        profile = self.plan.profile
        spec = profile.freshness
        lag = summary_ms(self._lags_s)
        return {
            "profile": profile.name, "target": self.options.target, "run_id": self.plan.run_id,
            "target_health": self._health,
            "planned_s": round(self.plan.duration_s, 2), "elapsed_s": round(elapsed_s, 2),
            "setup": {
                "items_upserted": len(self.plan.items), "ready_s": round(self._ready_s, 2),
                "items_retired": self._retired,
            },
            "peak": profile.traffic.peak.model_dump(),
            "pages": self.pages.report(self.plan.duration_s),
            "sources": dict(self.pages.sources.most_common()),
            "fallback_share": self.pages.fallback_share(),
            "events": self.events.report(self.plan.duration_s),
            "freshness": self.freshness.report(spec.timeout_s, spec.poll_ms / 1000),
            "sold_out": {**self.sold_out.report(), "stock_events_failed": self.stock_failures},
            "client": {
                "concurrency": self.options.concurrency,
                "cpu_share": round(self._cpu_share, 3),
                "dispatch_lag_p99_ms": lag["p99_ms"], "dispatch_lag_max_ms": lag["max_ms"],
            },
        }  # fmt: skip


def _p_ms(values_s: list[float], q: float) -> float | None:
    return round(percentile(values_s, q) * 1000, 1) if values_s else None


def run_rehearsal(
    plan: Plan,
    options: RehearsalOptions,
    on_progress: ProgressHook | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Run `plan` against `options.target` and return the report."""
    return asyncio.run(Rehearsal(plan, options, transport).run(on_progress))
