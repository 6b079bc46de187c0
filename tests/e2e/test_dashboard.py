"""The dashboard and the API docs in a real headless Chromium, against `shopper serve`.

The browser is Debian's chromium (`make test` and `.ci/run` install it where they can):
Playwright's own browser download is not reachable here. Without it these tests fail,
never skip. Every page must load with no console error, no failed request and no
request to anywhere but the server.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    Route,
    sync_playwright,
)
from playwright.sync_api import Request as BrowserRequest

from shopper.bootstrap import build_system
from shopper.config import load_config
from shopper.demo.client import ShopClient
from shopper.demo.runner import ShopperProcess
from shopper.demo.simulator import ShopSimulator, SimulationParams
from shopper.services.runtime import ApiServer
from tests.helpers import TEST_ADMIN_TOKEN, TEST_INGEST_KEY

SAMPLE_S = 0.5
WAIT_S = 20.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EXPERIMENT_CHARTS = {"conversion": "conversion_rate", "revenue": "revenue_per_session"}
CHARTS = [*EXPERIMENT_CHARTS, "latency", "freshness", "sources", "tiers", "trending", "traffic"]
# The last run's screenshot, where it outlives pytest's temporary folders.
SCREENSHOT_COPY = Path(tempfile.gettempdir()) / "shopper-e2e" / "dashboard.png"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`shopper serve --role all` after a small simulated shop's traffic, once the
    dashboard's history has sampled all of it."""
    config = load_config(
        {},
        data_dir=tmp_path_factory.mktemp("shop"),
        dashboard_sample_s=SAMPLE_S,
        microbatch_wait_s=0.01,
        admin_token=TEST_ADMIN_TOKEN,
        ingest_key=TEST_INGEST_KEY,
    )
    with ShopperProcess(config, "all") as url:
        client = ShopClient(url, TEST_ADMIN_TOKEN, TEST_INGEST_KEY)
        try:
            simulator = ShopSimulator(SimulationParams(shoppers=40, concurrent_sessions=10))
            # A pause per finished visit spreads the traffic over a few samples.
            simulator.run(client, tick=lambda _: time.sleep(0.05))
            assert client.stats.errors == 0
            wait_for_samples(url, applied=client.stats.events_accepted)
        finally:
            client.close()
        yield url


def wait_for_samples(url: str, applied: int) -> None:
    """Until the newest sample shows every accepted event applied, two samples at least."""
    deadline = time.monotonic() + WAIT_S
    samples: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        samples = httpx.get(f"{url}/v1/dashboard/series").json()["samples"]
        if len(samples) >= 2 and (samples[-1]["stats"] or {}).get("applied", 0) >= applied:
            return
        time.sleep(SAMPLE_S / 2)
    pytest.fail(f"the history never showed {applied} events applied; last: {samples[-1:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed: these browser tests need Debian's chromium "
            "(apt-get install -y chromium; `make test` does it when run as root)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class WatchedPage:
    """A page that notes every console error, page error, failed request and response
    of 400 or more, and refuses (and notes) any request to another host than `url`'s."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.page: Page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.host = urlsplit(url).netloc
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)
        self.page.route("**/*", self._local_only)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _failed(self, request: BrowserRequest) -> None:
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _local_only(self, route: Route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https") and parts.netloc != self.host:
            self.problems.append(f"request outside the server: {route.request.url}")
            route.abort()
        else:
            route.continue_()


@pytest.fixture
def watched(browser: Browser, shop: str) -> Iterator[WatchedPage]:
    page = WatchedPage(browser, shop)
    yield page
    page.page.close()


def open_dashboard(watched: WatchedPage, url: str) -> dict[str, Any]:
    """Load /dashboard until it has drawn. What it shows, read at one moment (it polls):
    `samples` it holds, `charts` (each one's points, series, lines and bands drawn),
    `tiles` (their text) and `rows` of the variant table."""
    page = watched.page
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_S * 1000)
    shown: dict[str, Any] = page.evaluate(
        """() => ({
            samples: Number(document.body.dataset.samples),
            charts: Object.fromEntries([...document.querySelectorAll('figure.chart')].map(f => [
                f.id.replace('chart-', ''),
                {points: Number(f.dataset.points), series: Number(f.dataset.series),
                 lines: f.querySelectorAll('path.line, circle.point').length,
                 bands: f.querySelectorAll('path.band').length}])),
            tiles: [...document.querySelectorAll('[data-tile]')].map(t => t.textContent),
            rows: document.querySelectorAll('#variants tbody tr').length,
        })"""
    )
    return shown


def test_the_dashboard_plots_the_run(
    shop: str, watched: WatchedPage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = open_dashboard(watched, shop)
    # What the page held: the oldest samples of the ring (it keeps them all here).
    series = httpx.get(f"{shop}/v1/dashboard/series").json()["samples"][: shown["samples"]]
    assert len(series) == shown["samples"] >= 2
    charts = shown["charts"]
    assert sorted(charts) == sorted(CHARTS)
    for name in set(CHARTS) - set(EXPERIMENT_CHARTS):
        chart = charts[name]
        assert chart["points"] > 0 and chart["lines"] > 0, (name, chart)
    for name, metric in EXPERIMENT_CHARTS.items():
        # As many as the live experiment report gives (test_the_dashboard_draws_each_
        # variant_with_its_interval draws a report of two variants).
        reported = any(
            (v.get(metric) or {}).get("value") is not None
            for s in series
            for v in (s["experiments"] or {}).get("variants", [])
        )
        assert (charts[name]["points"] > 0) == reported, (name, charts[name])

    assert len(shown["tiles"]) == 8
    assert all(re.match(r"^\d", text) for text in shown["tiles"]), shown["tiles"]
    variants = (series[-1]["experiments"] or {}).get("variants") or []
    assert shown["rows"] == max(1, len(variants))  # or a row saying there are none

    # It polls: new samples arrive without a reload.
    page = watched.page
    held = shown["samples"]
    page.wait_for_function(f"Number(document.body.dataset.samples) > {held}", timeout=5000)

    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=screenshot, full_page=True)
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    with capsys.disabled():
        print(f"\ndashboard screenshot: {screenshot} (copied to {SCREENSHOT_COPY})")
    assert watched.problems == []


def test_the_dashboard_draws_each_variant_with_its_interval(
    shop: str, watched: WatchedPage
) -> None:
    """The experiment panels on a report of the documented shape: a champion, and a
    challenger with no sessions (null values) in the first sample."""
    samples = httpx.get(f"{shop}/v1/dashboard/series").json()["samples"]
    for step, sample in enumerate(samples):
        sample["experiments"] = two_variants(step)

    def serve_series(route: Route) -> None:
        since = parse_qs(urlsplit(route.request.url).query).get("since")
        shown = [s for s in samples if not since or s["at"] > float(since[0])]
        body = json.dumps({"interval_s": SAMPLE_S, "samples": shown})
        route.fulfill(status=200, content_type="application/json", body=body)

    watched.page.route("**/v1/dashboard/series*", serve_series)
    charts = open_dashboard(watched, shop)["charts"]

    for name in EXPERIMENT_CHARTS:
        assert charts[name]["series"] == 2
        assert charts[name]["points"] == 2 * len(samples) - 1, charts[name]
        assert charts[name]["bands"] == 2
    rows = watched.page.locator("#variants tbody tr")
    assert rows.count() == 2
    challenger = rows.nth(1).locator("td")
    assert challenger.nth(0).text_content() == "challenger"
    assert re.match(r"^\d+(\.\d+)?% \[", challenger.nth(5).text_content() or "")
    assert "p=0.012" in (challenger.nth(7).text_content() or "")
    assert challenger.nth(7).get_attribute("class") == "significant"
    assert watched.problems == []


def two_variants(step: int) -> dict[str, Any]:
    """An experiment report as GET /v1/experiments gives it, `step` samples in."""

    def interval(value: float | None, half: float) -> dict[str, float | None]:
        if value is None:
            return {"value": None, "low": None, "high": None}
        return {"value": value, "low": value - half, "high": value + half}

    def variant(name: str, role: str, sessions: int, rate: float | None) -> dict[str, Any]:
        return {
            "name": name,
            "model": "v1" if role == "champion" else "v2",
            "weight": 90 if role == "champion" else 10,
            "role": role,
            "sessions": sessions,
            "impressions": 4 * sessions,
            "clicks": sessions // 2,
            "carted_sessions": sessions // 5,
            "converted_sessions": sessions // 12,
            "revenue": 9.5 * sessions,
            "ctr": interval(None if rate is None else 0.12, 0.02),
            "add_to_cart_rate": interval(None if rate is None else 0.2, 0.03),
            "conversion_rate": interval(rate, 0.02),
            "revenue_per_session": interval(None if rate is None else 95 * rate, 1.5),
            "vs_champion": None,
        }

    champion = variant("champion", "champion", 100 + 20 * step, 0.08)
    challenger = variant("challenger", "challenger", 10 * step, 0.11 if step else None)
    if step:
        challenger["vs_champion"] = {
            "conversion_rate": {
                "test": "two-proportion z",
                "difference": 0.03,
                "low": 0.006,
                "high": 0.054,
                "p_value": 0.012,
                "significant": True,
            }
        }
    return {
        "champion": "champion",
        "confidence": 0.95,
        "variants": [champion, challenger],
        "guardrail": {},
    }


def test_the_api_docs_render_offline(shop: str, watched: WatchedPage) -> None:
    operations = sum(
        len(methods) for methods in httpx.get(f"{shop}/openapi.json").json()["paths"].values()
    )
    page = watched.page
    page.goto(f"{shop}/docs")
    page.wait_for_selector(".opblock", timeout=WAIT_S * 1000)
    assert page.locator(".opblock").count() == operations
    assert page.locator(".opblock-summary-path", has_text="/v1/recommendations").count() == 1
    assert watched.problems == []


def test_with_a_read_key_the_dashboard_sends_the_key_of_its_url(browser: Browser) -> None:
    """A read key set: `/dashboard#key=KEY` reads its series with it; without it the page
    says it cannot reach shopper (401), and draws no sample."""
    read_key = "read-key-of-the-dashboard-test"
    system = build_system(load_config({}, read_key=read_key, dashboard_sample_s=SAMPLE_S))
    try:
        with ApiServer(cast(FastAPI, system.app())) as url:
            deadline = time.monotonic() + WAIT_S
            series = f"{url}/v1/dashboard/series"
            auth = {"authorization": f"Bearer {read_key}"}
            while not httpx.get(series, headers=auth).json()["samples"]:
                assert time.monotonic() < deadline, "no sample taken"
                time.sleep(SAMPLE_S / 2)
            keyed = WatchedPage(browser, url)
            keyed.page.goto(f"{url}/dashboard#key={read_key}")
            keyed.page.wait_for_selector("body[data-ready='true']", timeout=WAIT_S * 1000)
            assert keyed.problems == []
            assert int(keyed.page.evaluate("document.body.dataset.samples")) >= 1
            bare = WatchedPage(browser, url)
            bare.page.goto(f"{url}/dashboard")
            bare.page.wait_for_selector("body[data-ready='true']", timeout=WAIT_S * 1000)
            assert any("HTTP 401" in problem for problem in bare.problems), bare.problems
            assert bare.page.evaluate("document.body.dataset.samples") == "0"
            keyed.page.close()
            bare.page.close()
    finally:
        system.close()
