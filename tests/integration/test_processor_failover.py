"""Two processor processes share a consumer group; one is killed mid-stream.

The survivor takes over the dead one's partitions, and every event's effect lands in Redis
exactly once: nothing lost (the dead one's uncommitted records are redelivered), nothing
doubled (the applied-event check skips what the dead one had already applied).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks.workload import shopper_events

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.services.runtime import free_port
from tests.fixtures.kafka import TEST_SESSION_TIMEOUT_S

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

USERS = 120
EVENTS_PER_USER = 25


def _processor(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "shopper", "serve", "--role", "processor"]
    command += ["--port", str(free_port())]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def processors_env(kafka_broker: str, redis_url: str, kafka_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "SHOPPER_STREAM_URL": f"kafka://{kafka_broker}",
        "SHOPPER_CACHE_URL": redis_url,
        "SHOPPER_TOPIC_PREFIX": kafka_prefix,
        "SHOPPER_REDIS_KEY_PREFIX": kafka_prefix,
        "SHOPPER_GROUP_SESSION_TIMEOUT_S": str(TEST_SESSION_TIMEOUT_S),
        "SHOPPER_MICROBATCH_MAX_EVENTS": "50",
    }


@pytest.fixture
def producer(processors_env: dict[str, str]) -> Iterator[System]:
    config = load_config(processors_env)
    system = build_system(config)
    yield system
    system.close()


def _interactions(system: System, users: list[str]) -> dict[str, int]:
    sessions = system.state.sessions(users)
    return {s: sessions[s].interactions for s in users}


def _assigned(log: str, pid: int) -> set[str]:
    """Partitions the processor with this pid was ever assigned (from its INFO log)."""
    owned: set[str] = set()
    for line in log.splitlines():
        if f" {pid} INFO " in line and "partitions assigned:" in line:
            owned.update(line.split("partitions assigned:")[1].split())
    return owned - {"none"}


def _wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_killed_processor_hands_over_with_every_effect_exactly_once(
    processors_env: dict[str, str], producer: System, tmp_path: Path
) -> None:
    events = shopper_events(USERS, EVENTS_PER_USER, items=300, seed=11)
    expected = Counter(f"u:{e['user_id']}" for e in events)
    users = sorted(expected)
    log = tmp_path / "processors.log"
    first = _processor(processors_env, log)
    second = _processor(processors_env, log)
    try:
        third = len(events) // 3
        producer.ingest.ingest(events[:third])
        producer.event_log.flush(10)
        # Both members are working before one dies.
        assert _wait_for(lambda: sum(_interactions(producer, users).values()) > 0, 30), (
            log.read_text()[-3000:]
        )
        assert _wait_for(
            lambda: all(_assigned(log.read_text(), p.pid) for p in (first, second)), 30
        ), f"both processors must own partitions first; log:\n{log.read_text()[-3000:]}"
        for start in range(third, len(events), 200):
            producer.ingest.ingest(events[start : start + 200])
            producer.event_log.flush(10)
            if start >= len(events) // 2 and first.poll() is None:
                first.send_signal(signal.SIGKILL)  # no goodbye: its partitions time out
                first.wait(10)
        done = _wait_for(lambda: _interactions(producer, users) == dict(expected), 90)
        got = _interactions(producer, users)
        lost = {u: expected[u] - got[u] for u in users if got[u] < expected[u]}
        doubled = {u: got[u] - expected[u] for u in users if got[u] > expected[u]}
        assert done, f"lost {lost}, doubled {doubled}; log:\n{log.read_text()[-3000:]}"
        assert first.returncode == -signal.SIGKILL
        assert second.poll() is None, "the survivor must still be running"
        assert sum(got.values()) == len(events)
        owned_first = _assigned(log.read_text(), first.pid)
        owned_second = _assigned(log.read_text(), second.pid)
        assert owned_first, "the killed processor never owned a partition"
        assert owned_first <= owned_second, "the survivor did not take over"
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)
