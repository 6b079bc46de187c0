"""What a chaos scenario drives throughout: page reads and shop events, from two threads,
and the tally it prints and checks.

Every event is a purchase at price 1.0 by one of the scenario's sessions, with an event id
of the scenario's own, so its effects can be counted exactly in Redis: the processor's
applied-event sets (which ids were applied) and each session's outcome revenue (how many
times: each application adds 1.0).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import redis

PAGE_PAUSE_S = 0.01
EVENT_PAUSE_S = 0.04
EVENTS_PER_POST = 5
SLOW_MS = 20.0


@dataclass
class PageTally:
    answered: int = 0
    not_200: int = 0
    empty: int = 0
    sold_out_shown: int = 0
    worst_ms: float = 0.0  # as the client saw it: queueing for a CPU included
    worst_server_ms: float = 0.0  # the slowest in the API's own account (Server-Timing)
    client_ms: list[float] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # pages over SLOW_MS: when, client, server
    failures: list[str] = field(default_factory=list)  # the first few, for the message


class Traffic:
    """Page reads and purchases against the API until stopped."""

    def __init__(
        self,
        api: str,
        headers: dict[str, str],
        scenario: str,
        items: list[str],
        sold_out: str,
        sessions: int = 40,
    ) -> None:
        self.scenario = scenario
        self.sessions = [f"{scenario}-s{n}" for n in range(sessions)]
        self._items = items
        self._sold_out = sold_out
        self._api = api
        self._headers = headers
        self.pages = PageTally()
        self.accepted: dict[str, float] = {}  # event id -> when accepted (monotonic)
        self.not_accepted = 0  # events a post did not get accepted (broker full, 5xx, ...)
        self.post_statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_pages, daemon=True),
            threading.Thread(target=self._post_events, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def accepted_since(self, since: float) -> set[str]:
        return {i for i, at in self.accepted.items() if at >= since}

    def _read_pages(self) -> None:
        with httpx.Client(base_url=self._api, headers=self._headers, timeout=5) as http:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                params: dict[str, Any] = {"k": 5, "impression": "false"}
                if n % 2:
                    params["session_id"] = self.sessions[n % len(self.sessions)]
                self._read_page(http, params)
                time.sleep(PAGE_PAUSE_S)

    def _read_page(self, http: httpx.Client, params: dict[str, Any]) -> None:
        tally = self.pages
        started = time.perf_counter()
        try:
            response = http.get("/v1/recommendations", params=params)
        except httpx.TransportError as exc:
            tally.answered += 1
            tally.not_200 += 1
            tally.failures.append(f"transport error: {exc}")
            return
        ms = (time.perf_counter() - started) * 1000
        tally.answered += 1
        served_ms = server_ms(response)
        tally.client_ms.append(ms)
        tally.worst_ms = max(tally.worst_ms, ms)
        tally.worst_server_ms = max(tally.worst_server_ms, served_ms)
        if ms > SLOW_MS:
            at = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
            tally.slow.append(f"{at} {ms:.1f} ms (server {served_ms:.1f} ms)")
        if response.status_code != 200:
            tally.not_200 += 1
            tally.failures.append(f"{response.status_code}: {response.text[:200]}")
            return
        shown = [i["item_id"] for i in response.json()["items"]]
        if not shown:
            tally.empty += 1
            tally.failures.append(f"empty list for {params}")
        if self._sold_out in shown:
            tally.sold_out_shown += 1

    def _post_events(self) -> None:
        numbers = itertools.count()
        with httpx.Client(base_url=self._api, headers=self._headers, timeout=10) as http:
            while not self._stop.is_set():
                batch = [self._purchase(next(numbers)) for _ in range(EVENTS_PER_POST)]
                self._post(http, batch)
                time.sleep(EVENT_PAUSE_S)

    def _purchase(self, n: int) -> dict[str, Any]:
        return {
            "event_id": f"{self.scenario}-e{n}",
            "type": "purchase",
            "ts": datetime.now(UTC).isoformat(),
            "session_id": self.sessions[n % len(self.sessions)],
            "item_id": self._items[n % len(self._items)],
            "price": 1.0,
            "quantity": 1,
        }

    def _post(self, http: httpx.Client, batch: list[dict[str, Any]]) -> None:
        try:
            response = http.post("/v1/events", json=batch)
        except httpx.TransportError:
            self.not_accepted += len(batch)
            return
        now = time.monotonic()
        self.post_statuses[response.status_code] = (
            self.post_statuses.get(response.status_code, 0) + 1
        )
        ids = [e["event_id"] for e in batch]
        if response.status_code == 202:
            taken = ids
        elif response.status_code in (422, 429):
            body = response.json()
            refused = set(body.get("not_accepted", []))
            refused |= {r["event_id"] for r in body.get("rejected", [])}
            taken = [i for i in ids if i not in refused]
        else:
            taken = []
        for event_id in taken:
            self.accepted[event_id] = now
        self.not_accepted += len(ids) - len(taken)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def server_ms(response: httpx.Response) -> float:
    """The time the API says it spent (`Server-Timing: app;dur=MS`)."""
    timing = response.headers.get("server-timing", "")
    _, _, dur = timing.partition("dur=")
    try:
        return float(dur)
    except ValueError:
        return float("nan")


@dataclass(frozen=True)
class Effects:
    """What the processor applied of a scenario's events, read from Redis."""

    applied: frozenset[str]  # event ids in the applied-event sets
    revenue: float  # the scenario's sessions' outcome revenue: one 1.0 per application


def effects(client: redis.Redis, prefix: str, scenario: str, sessions: list[str]) -> Effects:
    pattern = re.compile(re.escape(scenario) + r"-e\d+")
    applied: set[str] = set()
    for key in client.scan_iter(match=f"{prefix}applied:*", count=1000):
        for member in client.sscan_iter(key, count=1000):
            found = pattern.search(member.decode(errors="replace"))
            if found:
                applied.add(found.group())
    with client.pipeline(transaction=False) as pipe:
        for session in sessions:
            pipe.hget(f"{prefix}outcome:s:{session}", "r")
        revenue = sum(float(r) for r in pipe.execute() if r is not None)
    return Effects(frozenset(applied), revenue)


def row(name: str, traffic: Traffic, window: set[str], found: Effects) -> str:
    """One line of the chaos table."""
    p = traffic.pages
    lost = len(window - found.applied)
    doubled = round(found.revenue) - len(found.applied)
    return (
        f"{name:<22} pages {p.answered:>5}  non-200 {p.not_200:>3}  empty {p.empty:>3}  "
        f"worst {p.worst_server_ms:>5.1f} ms in the API, client p99 {p99(p.client_ms):>5.1f} "
        f"max {p.worst_ms:>6.1f} ms  accepted {len(window):>5}  "
        f"applied {len(found.applied & window):>5}  lost {lost:>3}  doubled {doubled:>3}  "
        f"sold-out shown {p.sold_out_shown}  posts {dict(sorted(traffic.post_statuses.items()))}"
    )
