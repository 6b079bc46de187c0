"""The page load benchmark's quick mode, with tiny durations: shape, and no errors."""

from __future__ import annotations

import pytest
import redis
from benchmarks.http_load import Timing
from benchmarks.page_load import QUICK_LEVELS, SERVERS, run

pytestmark = pytest.mark.redis


def test_quick_mode_answers_from_both_servers_without_errors(redis_url: str) -> None:
    out = run(redis_url, quick=True, timing=Timing(0.2, 0.5), repeats=2, shoppers=300)

    assert set(out["levels"]) == {str(n) for n in QUICK_LEVELS}
    for level in out["levels"].values():
        for name in SERVERS:
            summary = level[name]
            assert summary["errors"] == 0
            assert summary["requests"]["min"] > 0
            for metric in ("req_per_s", "p50_ms", "p99_ms", "p999_ms"):
                assert set(summary[metric]) == {"median", "min", "max"}
        ratios = level["ratio_shopper_over_floor"]
        assert set(ratios) == {"req_per_s", "p50_ms", "p99_ms", "p999_ms"}
        assert ratios["req_per_s"]["median"] > 0
    # Its keys are gone with it.
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="bench-*"))
