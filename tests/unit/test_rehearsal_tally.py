"""The rehearsal's measures: sold-out items caught on pages, latency and freshness
summaries, the fallback share."""

from __future__ import annotations

import pytest

from shopper.rehearsal.tally import (
    EventTally,
    FreshnessTally,
    PageTally,
    SoldOutWatch,
    summary_ms,
)


def test_a_sold_out_item_on_a_page_read_after_the_accept_counts() -> None:
    watch = SoldOutWatch(["a", "b"])
    watch.check(["a", "x"], started_at=1.0)  # before the stock event: fine, and noted
    watch.sending("a", at=2.0)
    watch.check(["a"], started_at=2.1)  # in flight: the server may read either side
    watch.accepted("a", at=2.5)
    watch.check(["x", "a"], started_at=2.5)  # at the accept: counts, 0 ms late
    watch.check(["a", "b"], started_at=3.0)  # b never sold out: only a counts
    watch.check(["x"], started_at=4.0)
    report = watch.report()
    assert report["stock_events"] == 1
    assert report["served"] == 2
    assert report["pages"] == 2
    assert report["items"] == ["a"]
    assert report["worst_delay_ms"] == pytest.approx(500.0)
    assert report["seen_before"] == 2  # a at 1.0, b at 3.0 (b's sell-out not sent yet)


def test_the_grace_lets_pages_just_after_the_accept_pass() -> None:
    watch = SoldOutWatch(["a"], grace_s=0.2)
    watch.sending("a", at=1.0)
    watch.accepted("a", at=1.1)
    watch.check(["a"], started_at=1.25)
    assert watch.served == 0
    watch.check(["a"], started_at=1.3)
    assert (watch.served, watch.report()["worst_delay_ms"]) == (1, pytest.approx(200.0))


def test_a_refused_stock_event_is_not_watched() -> None:
    watch = SoldOutWatch(["a"])
    watch.sending("a", at=1.0)
    watch.failed("a")
    watch.check(["a"], started_at=5.0)
    assert watch.report()["served"] == 0 and watch.stock_events == 0


def test_a_clean_run_reports_nothing_served() -> None:
    report = SoldOutWatch(["a"]).report()
    assert report["served"] == 0 and report["worst_delay_ms"] is None and report["items"] == []


def test_summary_ms() -> None:
    assert summary_ms([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = [n / 1000 for n in range(1, 101)]  # 1..100 ms
    assert summary_ms(values) == {"p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0}


def test_pages_fallback_share_and_errors() -> None:
    pages = PageTally()
    for source in ["personalized"] * 6 + ["popular"] * 3 + ["similar"]:
        pages.answered("hold", 0.004, 200, source)
    pages.answered("ramp", 0.002, 200, "personalized")
    pages.answered("hold", 0.5, 503, None)
    pages.failed("ReadTimeout")
    pages.server_time("app;dur=1.500")
    pages.server_time("something-else")
    report = pages.report(planned_s=2.0)
    assert pages.fallback_share() == pytest.approx(4 / 11, abs=1e-4)
    assert dict(pages.sources) == {"personalized": 7, "popular": 3, "similar": 1}
    assert report["sent"] == 13 and report["ok"] == 11 and report["per_s"] == 6.5
    assert report["non_200"] == {"503": 1} and report["errors"] == {"ReadTimeout": 1}
    # latency percentiles are over answered pages (errors are counted apart)
    assert report["max_ms"] == 4.0
    assert report["by_phase"]["ramp"] == {
        "pages": 1, "p50_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0, "fallback_share": 0.0,
    }  # fmt: skip
    assert report["by_phase"]["hold"]["fallback_share"] == 0.4
    assert report["server"]["p50_ms"] == 1.5
    assert PageTally().fallback_share() is None


def test_freshness_and_events_reports() -> None:
    fresh = FreshnessTally(delays_s=[0.05, 0.1, 0.15], stale=1, failed=2, page_reads=9)
    report = fresh.report(timeout_s=10.0, poll_s=0.02)
    assert report["measured"] == 4 and report["fresh"] == 3 and report["stale"] == 1
    assert report["p50_ms"] == 100.0 and report["max_ms"] == 150.0 and report["poll_ms"] == 20.0
    events = EventTally(sent=10, accepted=9, throttled=1, latencies_s=[0.001])
    assert events.report(planned_s=5.0)["per_s"] == 2.0
