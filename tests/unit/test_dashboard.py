"""The dashboard's routes, its page-read timer, and the API docs served offline."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shopper.api.dashboard import source_of
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from tests.helpers import keyed
from tests.unit.api_harness import SwitchableApp

SAMPLE_S = 0.05


@pytest.fixture
def system() -> Iterator[System]:
    built = build_system(load_config({}, dashboard_sample_s=SAMPLE_S))
    yield built
    built.close()


def client(
    server: tuple[SwitchableApp, str], app: Any, headers: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    switch, url = server
    switch.target = app
    with httpx.Client(base_url=url, timeout=10, headers=headers) as http:
        yield http
    switch.target = None


@pytest.fixture
def http(server: tuple[SwitchableApp, str], system: System) -> Iterator[httpx.Client]:
    yield from client(server, system.app(), keyed(system))


@pytest.fixture
def ops_http(server: tuple[SwitchableApp, str], system: System) -> Iterator[httpx.Client]:
    yield from client(server, system.ops_app())


def series_until(http: httpx.Client, done: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        body = http.get("/v1/dashboard/series").json()
        if done(body["samples"]) or time.monotonic() > deadline:
            return list(body["samples"])
        time.sleep(SAMPLE_S)


def test_the_series_holds_snapshots_of_stats_experiments_and_pages(http: httpx.Client) -> None:
    samples = series_until(http, lambda s: len(s) >= 2)
    assert len(samples) >= 2
    first = samples[0]
    assert set(first) == {"at", "stats", "experiments", "pages"}
    assert first["stats"]["processors"] == 0  # as GET /v1/stats in this process
    assert "variants" in first["experiments"]  # as GET /v1/experiments
    assert samples[1]["at"] > first["at"]
    later = http.get("/v1/dashboard/series", params={"since": first["at"]}).json()
    assert later["interval_s"] == SAMPLE_S
    assert all(s["at"] > first["at"] for s in later["samples"])


def test_page_reads_are_timed_and_counted_by_source(http: httpx.Client) -> None:
    for _ in range(3):
        assert http.get("/v1/recommendations", params={"user_id": "me"}).status_code == 200
    assert http.get("/v1/recommendations", params={"k": 0}).status_code == 422
    samples = series_until(http, lambda s: s and s[-1]["pages"]["reads"] == 4)
    pages = samples[-1]["pages"]
    assert pages["sources"] == {"popular": 3, "error": 1}
    # Percentiles cover the last interval only: find the one that saw the reads.
    timed = [s["pages"] for s in samples if s["pages"]["window_reads"]]
    assert timed, samples
    assert 0 < timed[0]["p50_ms"] <= timed[0]["p99_ms"]


def test_the_dashboard_page_and_its_assets_are_served(http: httpx.Client) -> None:
    page = http.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(assets/[^"]+)"', page.text)
    assert sorted(assets) == ["assets/dashboard/dashboard.css", "assets/dashboard/dashboard.js"]
    for asset in assets:
        assert http.get(f"/{asset}").status_code == 200
    assert "/dashboard" not in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("which", ["api", "ops"])
def test_the_docs_load_nothing_from_elsewhere(
    which: str, http: httpx.Client, ops_http: httpx.Client
) -> None:
    target = http if which == "api" else ops_http
    page = target.get("/docs")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert links, page.text
    assert not [link for link in links if "//" in link], links
    for link in links:
        assert target.get(link).status_code == 200, link
    assert target.get("/redoc").status_code == 404


def test_source_of_reads_the_field_not_an_item_id() -> None:
    body = b'{"items":[{"item_id":"x\\"source\\":\\"y","score":1}],"source":"popular","x":1}'
    assert source_of(body) == "popular"
    assert source_of(b'{"detail":"bad"}') is None
