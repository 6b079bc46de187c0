"""The page load benchmark's quick mode, with tiny durations: each section's shape, and no
errors where none are expected. One run serves every test of the module."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from benchmarks.http_load import Timing
from benchmarks.page_load import QUICK_LEVELS, SERVERS, run
from benchmarks.page_plan import QUICK_RATES, QUICK_WORKER_LEVELS, WORKERS

from tests.fixtures.redis import REDIS_HOST, REDIS_PORT

pytestmark = pytest.mark.redis

SPREAD = {"median", "min", "max"}
LATENCIES = ("req_per_s", "p50_ms", "p99_ms", "p999_ms")


@pytest.fixture(scope="module")
def quick(_redis_db: int) -> dict[str, Any]:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{_redis_db}"
    out = run(url, quick=True, timing=Timing(0.2, 0.5), repeats=2, shoppers=300)
    client = redis.Redis.from_url(url)
    out["left_behind"] = list(client.scan_iter(match="bench-*"))
    client.close()
    return out


def _assert_side_by_side(section: dict[str, Any], names: tuple[str, str]) -> None:
    for name in names:
        summary = section[name]
        assert summary["errors"] == 0
        # Some repeat answered (on a busy shared machine a whole tiny window can stall).
        assert summary["requests"]["max"] > 0
        for metric in LATENCIES:
            assert set(summary[metric]) == SPREAD
    ratios = section[f"ratio_{names[1]}_over_{names[0]}"]
    assert set(ratios) == set(LATENCIES)
    assert ratios["req_per_s"]["median"] > 0


def test_closed_loop_levels_answer_from_both_servers(quick: dict[str, Any]) -> None:
    assert set(quick["levels"]) == {str(n) for n in QUICK_LEVELS}
    for level in quick["levels"].values():
        _assert_side_by_side(level, SERVERS)


def test_open_loop_keeps_its_rate_on_both_servers(quick: dict[str, Any]) -> None:
    assert set(quick["open_loop"]) == {str(rate) for rate in QUICK_RATES}
    for rate, section in quick["open_loop"].items():
        _assert_side_by_side(section, SERVERS)
        for name in SERVERS:
            offered = section[name]["offered_req_per_s"]["median"]
            assert 0.5 * int(rate) < offered < 1.5 * int(rate)  # Poisson over half a second
            assert {"late", "send_lag_p50_ms", "send_lag_p99_ms"} <= set(section[name])


def test_sync_baseline_is_measured_beside_shopper(quick: dict[str, Any]) -> None:
    baseline = quick["sync_baseline"]
    assert set(baseline["levels"]) == {str(n) for n in QUICK_LEVELS}
    assert set(baseline["open_loop"]) == {str(rate) for rate in QUICK_RATES}
    one = baseline["levels"]["1"]
    # One connection: no queue, every request answered after its inference.
    assert one["sync_baseline"]["errors"] == 0
    assert one["sync_baseline"]["p50_ms"] > 100
    assert one["p99_ratio_over_shopper"] > 1
    for section in ("levels", "open_loop"):
        for entry in baseline[section].values():
            assert entry["sync_baseline"]["requests"] > 0
            assert entry["shopper_p99_ms"] > 0
            assert isinstance(entry["p99_is_lower_bound"], bool)
    peak = baseline["p99_ratio_at_peak"]
    assert peak["connections"] == max(QUICK_LEVELS)
    assert peak["ratio"] == baseline["levels"][str(max(QUICK_LEVELS))]["p99_ratio_over_shopper"]
    assert baseline["p99_ratio_at_peak_open_loop"]["rate"] == max(QUICK_RATES)


def test_workers_compare_one_worker_with_the_production_setting(quick: dict[str, Any]) -> None:
    workers = quick["workers"]
    assert workers["workers"] == WORKERS
    assert "floor" in workers["servers"]
    assert ("note" in workers) == ("shopper" not in workers["servers"])
    assert set(workers["levels"]) == {str(n) for n in QUICK_WORKER_LEVELS}
    for level in workers["levels"].values():
        assert set(level) == set(workers["servers"])
        for section in level.values():
            _assert_side_by_side(section, ("1_worker", f"{WORKERS}_workers"))


def test_conditions_say_how_each_section_was_taken(quick: dict[str, Any]) -> None:
    conditions = quick["conditions"]
    for section in ("levels", "open_loop", "sync_baseline", "workers"):
        assert conditions[section]["where"]
    assert conditions["data"]["shoppers"] == 300
    assert conditions["sync_baseline"]["model"]["deadline_s"] > 0
    assert set(quick["section_seconds"]) == {"levels", "open_loop", "sync_baseline", "workers"}


def test_its_keys_are_gone_with_it(quick: dict[str, Any]) -> None:
    assert quick["left_behind"] == []
