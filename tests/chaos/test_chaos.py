"""`make chaos`: faults survived, with real processes (issue 12).

One stack for the module: a Redis of the test's own, the tansu broker, `shopper serve --role
api` and `--role processor`. Each scenario drives page reads and purchases throughout, breaks
one thing, recovers, and prints a row of the table: pages answered, non-200s, empty lists,
worst page latency (the API's own, and the client's 99th percentile and maximum),
events accepted and applied, lost and doubled. It asserts the must-show:
every page 200 with a non-empty list (the catalog has items in stock), none slower than
`WORST_PAGE_MS`, no sold-out item shown, and after recovery every accepted event applied
exactly once (for a fault that loses the broker's or Redis's data, counting the events
accepted from the moment it died: those before went with it).

Scenarios run in file order on the one stack; each leaves it healthy for the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.stack import ADMIN_TOKEN, Broker, RedisServer, Shopper
from tests.chaos.traffic import Effects, Traffic, effects, p99, row

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

WORST_PAGE_MS = 50.0
STEADY_S = 3.0  # traffic before the fault
FAULT_S = 5.0  # how long the fault lasts
AFTER_S = 4.0  # traffic after recovery
SETTLE_S = 60.0  # how long every accepted event has to be applied
ITEMS = [f"item-{n}" for n in range(12)]
SOLD_OUT = "item-sold"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TABLE: list[str] = []


class Chaos:
    def __init__(self, tmp: Path) -> None:
        logs = tmp / "logs"
        logs.mkdir()
        self.logs = logs
        self.redis = RedisServer(logs)
        self.broker = Broker(logs)
        self.redis.start()
        self.broker.start()
        self.shopper = Shopper(logs, tmp / "data", self.redis.url, self.broker.address)
        self.api = f"http://127.0.0.1:{self.shopper.api_port}"

    def start(self) -> None:
        self.shopper.start()
        self._fill_catalog()

    def stop(self) -> None:
        self.shopper.stop()
        self.broker.kill()
        self.redis.kill()

    def _fill_catalog(self) -> None:
        """Items in stock, and one bought often, then sold out: it would top the popular
        list if stock were not checked."""
        with httpx.Client(base_url=self.api, headers=HEADERS, timeout=10) as http:
            items = [{"item_id": i, "title": i, "price": 1.0, "stock": 100} for i in ITEMS]
            items.append({"item_id": SOLD_OUT, "title": SOLD_OUT, "price": 1.0, "stock": 100})
            assert http.put("/v1/catalog/items", json=items).status_code == 202
            warm = Traffic(self.api, HEADERS, "warm", [SOLD_OUT, *ITEMS], SOLD_OUT)
            events = [warm._purchase(n) for n in range(60)]
            events = [{**e, "item_id": SOLD_OUT} if n % 2 else e for n, e in enumerate(events)]
            for start in range(0, len(events), 20):
                answer = http.post("/v1/events", json=events[start : start + 20])
                assert answer.status_code == 202, answer.text
            self._wait_for_lists(http, SOLD_OUT)
            gone = {**warm._purchase(999), "type": "stock_change", "quantity": 0}
            gone = {k: v for k, v in gone.items() if k not in ("session_id", "price")}
            gone |= {"item_id": SOLD_OUT, "event_id": "warm-sold-out"}
            answer = http.post("/v1/events", json=gone)
            assert answer.status_code == 202, answer.text
            self._wait_for_lists(http)

    def _wait_for_lists(self, http: httpx.Client, top: str | None = None) -> None:
        """Until the popular list is written (with `top` first), then without the sold-out
        item once it sold out."""
        deadline = time.monotonic() + 60
        while True:
            body = http.get("/v1/recommendations", params={"k": 5, "impression": "false"})
            shown = [i["item_id"] for i in body.json()["items"]]
            if shown and (shown[0] == top if top else SOLD_OUT not in shown):
                return
            assert time.monotonic() < deadline, f"lists not written as expected: {shown}"
            time.sleep(0.2)

    def run(
        self,
        name: str,
        fault: Callable[[], None],
        recover: Callable[[], None],
        count_from_fault: bool = False,
    ) -> None:
        """Traffic throughout; `fault`, then `recover`; the row printed; the must-show."""
        traffic = Traffic(self.api, HEADERS, name, ITEMS, SOLD_OUT)
        traffic.start()
        try:
            time.sleep(STEADY_S)
            fault_at = time.monotonic()
            print(f"\nfault at {time.strftime('%H:%M:%S', time.gmtime())}")
            fault()
            time.sleep(FAULT_S)
            print(f"recovery at {time.strftime('%H:%M:%S', time.gmtime())}")
            recover()
            time.sleep(AFTER_S)
        finally:
            traffic.stop()
        window = traffic.accepted_since(fault_at if count_from_fault else 0.0)
        found = self._settled(traffic, window)
        line = row(name, traffic, window, found)
        TABLE.append(line)
        print("\n" + line)
        print("slow pages:", *traffic.pages.slow[-40:], sep="\n  ")
        print("slow Redis commands:", *self.redis.slow_commands(), sep="\n  ")
        pages = traffic.pages
        assert pages.not_200 == 0, pages.failures[:5]
        assert pages.empty == 0, pages.failures[:5]
        assert pages.sold_out_shown == 0
        # The API's own time per page (Server-Timing) is the bound; as the client saw it,
        # the 99th percentile: on a shared 2-core machine a page can wait for a CPU.
        assert pages.worst_server_ms <= WORST_PAGE_MS, (line, pages.slow[-10:])
        assert p99(pages.client_ms) <= WORST_PAGE_MS, (line, pages.slow[-10:])
        assert len(window) > 0, f"no event accepted: {traffic.post_statuses}"
        assert window <= found.applied, f"lost: {sorted(window - found.applied)[:10]}"
        assert round(found.revenue) == len(found.applied), f"applied more than once: {line}"
        assert self.redis_knows_sold_out(), "the sold-out item was forgotten"

    def _settled(self, traffic: Traffic, window: set[str]) -> Effects:
        """The effects once every event of `window` is applied (or SETTLE_S passed) and
        the processor has gone quiet (a redelivery would come now)."""
        client = self.redis.client()
        try:
            deadline = time.monotonic() + SETTLE_S
            found = effects(client, self.shopper.prefix, traffic.scenario, traffic.sessions)
            while not window <= found.applied and time.monotonic() < deadline:
                time.sleep(0.5)
                found = effects(client, self.shopper.prefix, traffic.scenario, traffic.sessions)
            time.sleep(2.0)
            return effects(client, self.shopper.prefix, traffic.scenario, traffic.sessions)
        finally:
            client.close()

    def redis_knows_sold_out(self) -> bool:
        client = self.redis.client()
        try:
            return bool(client.sismember(f"{self.shopper.prefix}sold_out", SOLD_OUT))
        finally:
            client.close()

    def readyz(self, port: int) -> tuple[int, dict[str, Any]]:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        return answer.status_code, answer.json()

    def not_ready(self, port: int, check: str, within_s: float = 4.0) -> dict[str, Any]:
        """`/readyz`'s 503 body once it says `check` failed (polled: it must within
        `within_s` of the fault)."""
        deadline = time.monotonic() + within_s
        while True:
            status, body = self.readyz(port)
            if status == 503 and not body["checks"][check]["ok"]:
                return body
            assert time.monotonic() < deadline, f"still ready: {status} {body}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    stack = Chaos(tmp_path_factory.mktemp("chaos"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if TABLE:
            print("\n\nchaos table\n" + "\n".join(TABLE))


def wait_ready(chaos: Chaos, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := chaos.readyz(port))[0] != 200:
        assert time.monotonic() < deadline, f"not ready again: {status}"
        time.sleep(0.2)


def test_redis_killed_and_restarted_empty(chaos: Chaos) -> None:
    said: list[dict[str, Any]] = []

    def fault() -> None:
        chaos.redis.kill()
        said.append(chaos.not_ready(chaos.shopper.api_port, "cache"))
        said.append(chaos.not_ready(chaos.shopper.processor_port, "processor"))

    chaos.run("redis restarted empty", fault, chaos.redis.start, count_from_fault=True)
    print("readyz while Redis was down:", *said, sep="\n  ")
    wait_ready(chaos, chaos.shopper.api_port)
    wait_ready(chaos, chaos.shopper.processor_port)
    # The catalog was rebuilt from the stream into the new Redis: every item is there.
    client = chaos.redis.client()
    try:
        keys = [f"{chaos.shopper.prefix}item:{i}" for i in [*ITEMS, SOLD_OUT]]
        assert client.exists(*keys) == len(keys)
    finally:
        client.close()


def test_broker_killed_and_restarted_without_topics(chaos: Chaos) -> None:
    said: list[dict[str, Any]] = []

    def fault() -> None:
        chaos.broker.kill()
        said.append(chaos.not_ready(chaos.shopper.api_port, "stream"))

    chaos.run("broker lost its topics", fault, chaos.broker.start, count_from_fault=True)
    print("readyz while the broker was down:", said[0])
    wait_ready(chaos, chaos.shopper.api_port)
    wait_ready(chaos, chaos.shopper.processor_port)


def test_processor_killed_mid_batch(chaos: Chaos) -> None:
    """SIGKILLed between applying a micro-batch and committing it: the processor runs
    10x slower first (benchmarks/slow_processor.py sleeps in that window), and is killed
    as soon as it has applied events of a batch. Its successor reads the batch again and
    applies none of it twice."""

    def fault() -> None:
        shopper = chaos.shopper
        shopper.restart_processor(slowdown=10)
        url = f"http://127.0.0.1:{shopper.processor_port}/v1/stats"
        first = httpx.get(url, timeout=5).json()["applied"]
        deadline = time.monotonic() + 10
        while httpx.get(url, timeout=5).json()["applied"] == first:
            assert time.monotonic() < deadline, "the processor read nothing"
            time.sleep(0.005)
        shopper.processor.kill()

    chaos.run("processor SIGKILLed", fault, chaos.shopper.restart_processor)
    stats = httpx.get(f"http://127.0.0.1:{chaos.shopper.processor_port}/v1/stats", timeout=5)
    again = stats.json()["duplicates"]
    print("the new processor found already applied:", again)
    assert again > 0, "the kill did not land between a batch's effects and its commit"


def test_processor_ten_times_slower(chaos: Chaos) -> None:
    def fault() -> None:
        chaos.shopper.restart_processor(slowdown=10)

    chaos.run("processor 10x slower", fault, chaos.shopper.restart_processor)


def test_server_clock_jumped(chaos: Chaos) -> None:
    """+1 h and back; then the processor SIGKILLed, so that what it applied under the
    jumped clock and had not committed is read again under the real one."""

    stamps: list[float] = []

    def fault() -> None:
        chaos.shopper.set_clock_offset(3600)
        time.sleep(2.0)  # a popular list written since is stamped by the jumped clock
        page = httpx.get(f"{chaos.api}/v1/recommendations", params={"k": 5}, headers=HEADERS)
        stamps.append(datetime.fromisoformat(page.json()["generated_at"]).timestamp())

    def recover() -> None:
        assert stamps[0] > time.time() + 3000, "the clock did not jump"
        chaos.shopper.set_clock_offset(0)
        time.sleep(1.0)  # the processes read the clock file again within 0.2 s
        chaos.shopper.processor.kill()
        chaos.shopper.restart_processor()

    chaos.run("clock +1 h and back", fault, recover)
