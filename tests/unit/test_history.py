"""The dashboard's history ring and the page path's log of reads."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shopper.services.history import History
from shopper.services.page_log import PageLog


class Ticker:
    """A clock that moves only when told."""

    def __init__(self, at: float = 1000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_each_sample_reads_every_source_at_its_time() -> None:
    clock = Ticker()
    counter = iter(range(10))
    history = History({"n": lambda: next(counter), "fixed": lambda: {"a": 1}}, 5.0, now=clock)
    history.sample()
    clock.at += 5
    history.sample()
    assert history.series() == [
        {"at": 1000.0, "n": 0, "fixed": {"a": 1}},
        {"at": 1005.0, "n": 1, "fixed": {"a": 1}},
    ]
    assert history.series(since=1000.0) == [{"at": 1005.0, "n": 1, "fixed": {"a": 1}}]


def test_the_ring_keeps_the_latest_samples() -> None:
    clock = Ticker()
    history = History({}, 1.0, samples=3, now=clock)
    for _ in range(5):
        history.sample()
        clock.at += 1
    assert [s["at"] for s in history.series()] == [1002.0, 1003.0, 1004.0]
    assert [s["at"] for s in history.series(since=1002.5)] == [1003.0, 1004.0]
    history.sample()  # the ring turns again
    assert [s["at"] for s in history.series()] == [1003.0, 1004.0, 1005.0]


def test_a_failing_source_is_null_and_the_others_still_read() -> None:
    def broken() -> Any:
        raise RuntimeError("down")

    history = History({"broken": broken, "ok": lambda: 1}, 1.0, now=Ticker())
    assert history.sample() == {"at": 1000.0, "broken": None, "ok": 1}


def test_the_thread_samples_until_stopped() -> None:
    history = History({"ok": lambda: 1}, 0.01)
    history.start()
    deadline = time.monotonic() + 5
    while len(history.series()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    history.stop()
    taken = len(history.series())
    assert taken >= 3
    time.sleep(0.05)
    assert len(history.series()) == taken


def test_page_log_percentiles_cover_the_last_window_and_sources_all_reads() -> None:
    clock = Ticker()
    pages = PageLog(window_s=5.0, clock=clock)
    assert pages.summary() == {
        "reads": 0,
        "sources": {},
        "window_reads": 0,
        "p50_ms": None,
        "p99_ms": None,
    }
    pages.record(100.0, "popular")
    clock.at += 10  # that read is out of the window now
    for ms in (1.0, 2.0, 3.0):
        pages.record(ms, "personalized")
    summary = pages.summary()
    assert summary["reads"] == 4
    assert summary["sources"] == {"popular": 1, "personalized": 3}
    assert summary["window_reads"] == 3
    assert summary["p50_ms"] == 2.0
    assert summary["p99_ms"] == 2.98


def test_page_log_is_bounded() -> None:
    pages = PageLog(window_s=60.0, capacity=2, clock=Ticker())
    for ms in (50.0, 1.0, 1.0):
        pages.record(ms, "popular")
    assert pages.summary()["window_reads"] == 2
    assert pages.summary()["p99_ms"] == 1.0
    assert pages.summary()["reads"] == 3


def test_a_snapshot_keeps_values_json_does_not_know_as_numbers_or_text() -> None:
    marker = object()
    history = History({"n": lambda: np.float64(1.5), "odd": lambda: marker}, interval_s=60)
    history.sample()
    (kept,) = history.series()
    assert kept["n"] == 1.5
    assert kept["odd"] == str(marker)
