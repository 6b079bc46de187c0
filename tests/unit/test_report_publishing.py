"""The experiment report: computed and published by a process that runs processors, read
by the API replicas (which must not spend their page path's CPU resampling sessions)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.domain.experiment_stats import SessionOutcome


def system_of(tmp_path: Path) -> System:
    return build_system(load_config({}, data_dir=tmp_path, dashboard_sample_s=0.05))


def test_an_api_replica_serves_the_published_report_without_computing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = system_of(tmp_path)
    try:
        published = {"champion": "champion", "variants": [], "published": "by a processor"}
        api.state.publish_report(published)

        def no_outcomes() -> list[SessionOutcome]:
            raise AssertionError("an API replica read every session to compute a report")

        monkeypatch.setattr(api.state, "outcomes", no_outcomes)
        assert api.experiment_report(0.0) == published
    finally:
        api.close()


def test_with_none_published_a_replica_computes_its_own(tmp_path: Path) -> None:
    api = system_of(tmp_path)
    try:
        report = api.experiment_report(0.0)
        assert [v["name"] for v in report["variants"]] == ["champion"]
        assert api.state.published_report() is None  # computed, not published
    finally:
        api.close()


def test_the_publisher_computes_and_publishes_on_its_interval(tmp_path: Path) -> None:
    system = system_of(tmp_path)
    computed: list[dict[str, Any]] = []
    original = system.state.publish_report

    def recording(report: dict[str, Any]) -> None:
        computed.append(report)
        original(report)

    system.state.publish_report = recording  # type: ignore[method-assign]
    try:
        system.start_report_publisher()
        deadline = time.monotonic() + 5
        while len(computed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(computed) >= 2  # every dashboard_sample_s (0.05 s here), not once
        published = system.state.published_report()
        assert published is not None
        assert [v["name"] for v in published["variants"]] == ["champion"]
    finally:
        system.close()
