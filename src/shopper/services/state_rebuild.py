"""Rebuilding the processor state's catalog from the stream when the state was lost.

Redis holds the processor state: the catalog, the stock and price of every item, the
counters. A Redis restarted without its data forgets the catalog, and with it every item
(only catalog items are recommended): the lists would go empty once the processors stop
remembering the items themselves (a restart). The catalog topic holds every catalog, stock
and price change ever accepted, so a processor that finds its state marker gone reads that
topic again from the start (a consumer group of its own) and folds it in, as it did the
first time, then sets the marker. Behaviour counters are not replayed: popularity builds up
again from new events (and the API's copy of the popular lists stands in meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from shopper.services.processor import Processor
from shopper.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often the marker is looked for
IDLE_DONE_S = 2.0  # a replay is done once the topic has given nothing for this long
FIRST_RECORD_WAIT_S = 10.0  # ... or, when it gave nothing at all, after this long


class StateMarker(Protocol):
    """A mark in the processor state that it has been kept since the catalog was folded in."""

    def present(self) -> bool: ...

    def mark(self) -> None: ...


def replay(processor: Processor, stop: threading.Event) -> int:
    """Run `processor` (a member of a group of its own, reading from the start) until its
    topics are drained (or `stop` is set); returns the records folded in."""
    total = 0
    started = last = time.monotonic()
    try:
        while not stop.is_set():
            n = processor.run_once()
            now = time.monotonic()
            if n:
                total, last = total + n, now
            elif now - last > (IDLE_DONE_S if total else FIRST_RECORD_WAIT_S):
                break
        return total
    finally:
        processor.close()
        log.info("catalog replay: %d records in %.1f s", total, time.monotonic() - started)


class StateRebuild:
    """Looks for the marker every CHECK_EVERY_S on a thread of its own; when it is gone,
    replays the catalog (`rebuild`) and marks the state again."""

    def __init__(self, marker: StateMarker, rebuild: Callable[[threading.Event], int]) -> None:
        self._marker = marker
        self._rebuild = rebuild
        self._stop = threading.Event()
        self._failures = ThrottledLog(log)
        self.rebuilds = 0
        self._thread = threading.Thread(target=self._loop, name="shopper-rebuild", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._marker.present():
                    log.warning("processor state without its marker: replaying the catalog")
                    records = self._rebuild(self._stop)
                    if self._stop.is_set():
                        return  # cut short: the next start replays again
                    self._marker.mark()
                    self.rebuilds += 1
                    log.warning("catalog rebuilt from the stream (%d records)", records)
                self._failures.recovered("processor state readable again")
            except Exception:
                self._failures.failure("checking or rebuilding the processor state failed")
            self._stop.wait(CHECK_EVERY_S)
