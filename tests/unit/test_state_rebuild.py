"""The catalog replayed from the stream when the processor state lost it (Redis restarted
empty): once per loss, marked after, and never while the marker is there."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from shopper.services import state_rebuild
from shopper.services.processor import Processor
from shopper.services.state_rebuild import StateRebuild, replay


class Marker:
    def __init__(self, present: bool) -> None:
        self.is_present = present
        self.marks = 0

    def present(self) -> bool:
        return self.is_present

    def mark(self) -> None:
        self.marks += 1
        self.is_present = True


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_lost_marker_is_one_replay_then_marked(monkeypatch: Any) -> None:
    monkeypatch.setattr(state_rebuild, "CHECK_EVERY_S", 0.01)
    marker = Marker(present=False)
    replays: list[int] = []

    def rebuild(_: threading.Event) -> int:
        replays.append(1)
        return 3

    watcher = StateRebuild(marker, rebuild)
    watcher.start()
    try:
        wait_until(lambda: marker.marks == 1)
        time.sleep(0.1)  # marked: no replay again
        assert len(replays) == 1
        marker.is_present = False  # lost again (another restart)
        wait_until(lambda: marker.marks == 2)
        assert len(replays) == 2 and watcher.rebuilds == 2
    finally:
        watcher.stop()


def test_a_failing_check_is_retried_and_nothing_is_marked(monkeypatch: Any) -> None:
    monkeypatch.setattr(state_rebuild, "CHECK_EVERY_S", 0.01)
    marker = Marker(present=False)
    calls: list[int] = []

    def rebuild(_: threading.Event) -> int:
        calls.append(1)
        raise ConnectionError("Redis away")

    watcher = StateRebuild(marker, rebuild)
    watcher.start()
    try:
        wait_until(lambda: len(calls) >= 3)
        assert marker.marks == 0
    finally:
        watcher.stop()


class Batches:
    """A processor whose micro-batches read `sizes`, then nothing."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.closed = False

    def run_once(self) -> int:
        if self.sizes:
            return self.sizes.pop(0)
        time.sleep(0.01)
        return 0

    def close(self) -> None:
        self.closed = True


def test_replay_runs_until_the_topic_is_drained(monkeypatch: Any) -> None:
    monkeypatch.setattr(state_rebuild, "IDLE_DONE_S", 0.05)
    processor = Batches([5, 0, 7])
    assert replay(cast(Processor, processor), threading.Event()) == 12
    assert processor.closed


def test_replay_stops_when_asked() -> None:
    stop = threading.Event()
    stop.set()
    processor = Batches([5])
    assert replay(cast(Processor, processor), stop) == 0
    assert processor.closed
