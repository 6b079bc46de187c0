"""Bad input never costs availability (issue 12): text that cannot be encoded, control
characters and hostile ids, oversize and endless bodies, stats read under load, event ids
of different shoppers. Each is refused with a reason (or taken as plain text) and leaves
every other shopper's list as it was."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.api.body import OFF_LOOP_BYTES
from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.services.processor_stats import FloatWindow, ProcessorStats, summarize_stats
from shopper.services.state_fold import StateFold
from tests.helpers import keyed
from tests.unit.api_harness import MAX_BATCH, Api, SwitchableApp
from tests.unit.factories import domain, in_catalog, view, wire
from tests.unit.test_state_fold import record

DASHBOARD_JS = Path(__file__).parents[2] / "src/shopper/api/static/dashboard/dashboard.js"


def post_raw(api: Api, body: bytes, path: str = "/v1/events") -> httpx.Response:
    return api.http.post(path, content=body, headers={"content-type": "application/json"})


def escaped(value: Any) -> bytes:
    """JSON text with every non-ASCII character escaped: how a lone surrogate travels."""
    return json.dumps(value).encode()


@pytest.fixture
def others(api: Api) -> Iterator[dict[str, Any]]:
    """Another shopper with a personalized list; the test checks it is unchanged after."""
    assert api.http.post("/v1/events", json=view("bystander-1", "bystander", "a")).is_success
    api.process()
    before = api.recommend(user_id="bystander")
    assert before["source"] == "personalized"
    yield before
    after = api.recommend(user_id="bystander")
    assert (after["items"], after["list_id"]) == (before["items"], before["list_id"])


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, name = path.split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    return raw


@pytest.mark.parametrize(
    "path",
    [
        "event_id",
        "user_id",
        "session_id",
        "item_id",
        "type",
        "list_id",
        "variant",
        "query",
        "context.device",
        "context.country",
        "context.page",
    ],
)
@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_is_refused_with_a_reason_and_the_rest_of_the_batch_goes_in(
    api: Api, others: dict[str, Any], path: str, text: str
) -> None:
    bad = _set(view("bad", "me", "a"), path, text)
    batch = [view("ok-1", "me", "a"), bad, view("ok-2", "me", "b")]
    before = api.published()

    response = post_raw(api, escaped(batch))

    assert response.status_code == 422, response.text
    body = response.json()  # the answer itself is valid UTF-8 JSON
    assert body["accepted"] == 2
    (rejected,) = body["rejected"]
    assert rejected["index"] == 1
    assert any(r.startswith(f"{path}:") for r in rejected["reasons"]), rejected
    assert api.published() == before + 2


def test_a_lone_surrogate_in_a_catalog_item_is_refused(api: Api) -> None:
    item = {"item_id": "mug", "title": "Mug \udc00", "attributes": {"colour\ud800": "blue"}}
    response = post_raw(api, escaped(wire("up-1", "item_upsert", item=item)))
    assert response.status_code == 422
    reasons = response.json()["rejected"][0]["reasons"]
    title, key = sorted(reasons, key=lambda r: r.startswith("item.attributes."))
    assert title.startswith("item.title: ")
    assert key.startswith("item.attributes.colour")  # the key, its surrogate made printable
    assert all("not valid Unicode text" in r for r in reasons)
    assert api.published() == 0


@pytest.mark.parametrize("char", ["\x00", "\r", "\n", "\t", "\x1b", "\x7f", "\x85"])
@pytest.mark.parametrize("path", ["event_id", "user_id", "item_id", "context.country"])
def test_control_characters_in_ids_are_refused(api: Api, char: str, path: str) -> None:
    response = api.http.post("/v1/events", json=_set(view("e1", "me", "a"), path, f"x{char}y"))
    assert response.status_code == 422
    (reason,) = response.json()["rejected"][0]["reasons"]
    assert reason == f"{path}: ids and keys cannot hold control characters (NUL, CR, LF, ...)"
    assert api.published() == 0


HOSTILE = ["<img src=x onerror=alert(1)>", "../../etc/passwd", "'; DROP TABLE items; --"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_are_opaque_text(api: Api, others: dict[str, Any], hostile: str) -> None:
    """Ids are opaque: taken as they are, answered as JSON text (escaped by the JSON
    encoder), never as markup or a path."""
    response = api.http.post("/v1/events", json=[view("h1", hostile, hostile)])
    assert response.status_code == 202
    api.process()
    page = api.http.get("/v1/recommendations", params={"user_id": hostile})
    assert page.status_code == 200
    assert page.headers["content-type"] == "application/json"
    assert hostile not in page.json()["items"]  # not in the catalog: never recommended


def test_the_dashboard_renders_text_never_markup() -> None:
    """What the dashboard shows comes from the API and may hold any text: it is set as
    text (textContent), never parsed as HTML."""
    script = DASHBOARD_JS.read_text()
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(
    api: Api, server: tuple[SwitchableApp, str], others: dict[str, Any]
) -> None:
    url = urlsplit(server[1])
    auth = keyed(api.system)["authorization"]
    head = (
        "POST /v1/events HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"authorization: {auth}\r\ncontent-length: 200000000\r\n\r\n"
    )
    before, started = api.published(), time.perf_counter()
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall(head.encode() + b"[")  # one byte of the 200 MB it announced
        answer = conn.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "over the limit of 1048576 bytes (max_body_bytes)" in answer
    assert time.perf_counter() - started < 2  # answered at once, not after a read timeout
    assert api.published() == before


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
    api: Api, others: dict[str, Any]
) -> None:
    sent, before = 0, api.published()

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b"["
        for _ in range(10_000):  # 640 MB if nobody stopped it
            sent += 65536
            yield b" " * 65536

    try:
        response = api.http.post("/v1/events", content=endless())
    except httpx.TransportError:
        pass  # the server may close the connection while the client still writes
    else:
        assert response.status_code == 413
        assert "max_body_bytes" in response.json()["detail"]
    assert sent < 64 * 2**20
    assert api.published() == before


def test_a_large_body_under_the_limit_is_taken(api: Api, others: dict[str, Any]) -> None:
    """Parsed and validated off the event loop (over OFF_LOOP_BYTES), all the same."""
    attributes = {f"a{n}": "x" * 1000 for n in range(60)}
    batch = [
        wire(f"up-{n}", "item_upsert", item={"item_id": f"big-{n}", "attributes": attributes})
        for n in range(MAX_BATCH)
    ]
    body = json.dumps(batch).encode()
    assert OFF_LOOP_BYTES < len(body) < 2**20
    before = api.published()
    response = post_raw(api, body)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": MAX_BATCH, "rejected": []}
    assert api.published() == before + MAX_BATCH


def test_stats_are_read_while_a_processor_writes_them() -> None:
    """`/v1/stats` reads the processors' freshness windows while their threads append:
    every read sees whole batches (each batch here is 500 equal values), never half of
    one, and never fails."""
    stats = [ProcessorStats(freshness_ms=FloatWindow(5_000)) for _ in range(2)]
    stop = threading.Event()

    def write(st: ProcessorStats) -> None:
        batch = 0
        while not stop.is_set():
            batch += 1
            st.add_freshness(float(batch) for _ in range(500))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    writers = [threading.Thread(target=write, args=(st,)) for st in stats]
    for w in writers:
        w.start()
    try:
        summaries, torn = [], 0
        deadline = time.perf_counter() + 1.0
        while time.perf_counter() < deadline:
            summaries.append(summarize_stats(stats))
            runs = [len(list(group)) for _, group in groupby(stats[0].freshness_snapshot())]
            torn += any(run % 500 for run in runs)
    finally:
        stop.set()
        for w in writers:
            w.join()
        sys.setswitchinterval(switch)
    assert len(summaries) > 10
    assert torn == 0
    assert all(s["processors"] == 2 for s in summaries)
    assert summaries[-1]["freshness_p99_ms"] > 0


def test_one_shoppers_event_id_never_hides_anothers_event() -> None:
    """Event ids are scoped to their shopper: two shops' trackers (or two shoppers' apps)
    may use the same id; a redelivery of one shopper's event is still a duplicate."""
    state = InMemoryProcessorState(half_life_s=3600.0)
    stats = ProcessorStats()
    events = [view("e1", "me", "a"), view("e1", "you", "b"), view("e1", "me", "a")]
    folded = StateFold(state, stats, 100, lambda *_: None).fold(
        [(record(n), domain(raw)) for n, raw in enumerate(events)]
    )
    assert (stats.applied, folded.duplicates) == (2, 1)
    sessions = state.sessions(["u:me", "u:you"])
    assert sessions["u:me"].interactions == 1
    assert sessions["u:you"].interactions == 1


@pytest.fixture
def live_api(server: tuple[SwitchableApp, str]) -> Iterator[Api]:
    """The API on the system clock: the catalog route stamps its upserts with the time now."""
    switch, url = server
    system = build_system(load_config({}, microbatch_wait_s=0, popular_refresh_s=0))
    in_catalog(system.state)
    switch.target = system.app()
    with httpx.Client(base_url=url, timeout=10, headers=keyed(system)) as http:
        yield Api(system, http)
    switch.target = None
    system.close()


def test_a_catalog_item_id_of_128_characters_is_upserted(live_api: Api) -> None:
    item_id = "i" * 128
    response = live_api.http.put("/v1/catalog/items", json=[{"item_id": item_id, "stock": 3}])
    assert response.status_code == 202, response.text
    (upsert,) = [json.loads(r.value) for r in live_api.records()]
    assert upsert["item"]["item_id"] == item_id
    assert len(upsert["event_id"]) <= 128
