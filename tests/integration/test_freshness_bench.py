"""The freshness benchmark's quick mode on a live deployment (embedded, and Kafka + Redis
as subprocesses): every section answers, in shape, and its Redis keys are gone after."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from benchmarks.freshness import PROBES_PER_S, QUICK, run

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

QUICK_PROBES = int(PROBES_PER_S * QUICK.window_s)


def test_quick_mode_measures_every_section(kafka_broker: str, redis_url: str) -> None:
    out = run(kafka_broker, redis_url, quick=True)

    for mode in ("embedded", "kafka_redis"):
        assert_under_events(out[mode])
    # The probes see the lists the processor writes (Kafka + Redis may take longer than the
    # quick timeout on a busy machine: its figures are not judged here).
    assert out["embedded"]["freshness"][str(QUICK.rates[0])]["never_fresh"] < QUICK_PROBES
    states = out["kafka_redis"]["page_by_processor_state"]
    for state in ("healthy", "slow", "stopped"):
        assert states[state]["errors"] == 0
        assert states[state]["requests"] > 0
        assert sum(states[state]["sources"].values()) == pytest.approx(1.0, abs=0.01)
    assert states["p99_over_healthy"]["healthy"] == 1.0
    assert set(out["conditions"]) >= {"freshness", "max", "sold_out", "page_by_processor_state"}
    # Its keys are gone with it.
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="bench-*"))


def assert_under_events(part: dict[str, Any]) -> None:
    drained = part["max_events_per_s"]
    assert drained["drained"] and drained["events_per_s"] > 0
    assert drained["sustained"]["tried"]
    for rate in QUICK.rates:
        level = part["freshness"][str(rate)]
        assert level["probes"] == QUICK_PROBES
        assert level["sent_events_per_s"] > 0.5 * rate
        assert 0 < level["p50_ms"] <= level["p99_ms"] <= level["max_ms"]
    sold = part["sold_out"]
    assert sold["items"] == QUICK.sold_out_items
    assert sold["per_item"][0]["shown_before"] > 0
    assert sold["reads_after_accept"] > 0
