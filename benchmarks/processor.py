"""Events per second through one processor: embedded vs Kafka + Redis, same events."""

from __future__ import annotations

import time
import uuid
from typing import Any

from benchmarks.cache import delete_prefix
from benchmarks.workload import shopper_events
from shopper.bootstrap import build_system
from shopper.config import load_config


def throughput(stream_url: str, cache_url: str, events: list[dict[str, Any]]) -> float:
    """Events/s of one processor draining a pre-filled stream, lists written included."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    config = load_config(
        {},
        stream_url=stream_url,
        cache_url=cache_url,
        topic_prefix=prefix,
        redis_key_prefix=prefix,
        microbatch_wait_s=0.0,
    )
    system = build_system(config)
    try:
        for start in range(0, len(events), 500):
            system.ingest.ingest(events[start : start + 500])
        system.event_log.flush(30)
        processor = system.processor()
        deadline = time.monotonic() + 300
        started = None
        while processor.stats.records < len(events) and time.monotonic() < deadline:
            read = processor.run_once()
            if read and started is None:
                # Start at the first record: joining a Kafka group is not throughput.
                started = time.perf_counter()
        elapsed = time.perf_counter() - (started or time.perf_counter())
        if processor.stats.records < len(events):
            raise RuntimeError(f"processor read {processor.stats.records} of {len(events)}")
        processor.close()
        return len(events) / elapsed
    finally:
        system.close()
        if cache_url.startswith("redis"):
            delete_prefix(cache_url, prefix)


def run(
    kafka: str | None, redis_url: str | None, users: int = 2000, per_user: int = 10
) -> dict[str, Any]:
    events = shopper_events(users, per_user, items=1000)
    out: dict[str, Any] = {"events": len(events)}
    out["embedded_events_per_s"] = round(throughput("memory://", "memory://", events), 1)
    if redis_url:
        out["redis_state_events_per_s"] = round(throughput("memory://", redis_url, events), 1)
    if kafka and redis_url:
        out["kafka_redis_events_per_s"] = round(
            throughput(f"kafka://{kafka}", redis_url, events), 1
        )
        out["kafka_redis_vs_embedded"] = round(
            out["kafka_redis_events_per_s"] / out["embedded_events_per_s"], 3
        )
    return out
