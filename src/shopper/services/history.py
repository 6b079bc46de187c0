"""The dashboard's history: timed snapshots of a process's numbers, in a bounded ring."""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Any

import orjson

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]
DEFAULT_SAMPLES = 720  # an hour at the default dashboard_sample_s of 5 s
STOP_WAIT_S = 5.0
_ENCODING = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class History:
    """Snapshots `{"at": epoch_s, name: source(), ...}` of every named source, the last
    `samples` of them kept. Once started, a daemon thread takes one every `interval_s`;
    `sample()` takes one at once.

    Each snapshot is kept encoded (JSON bytes), one object rather than a tree of small
    ones, in slots made once: an hour of snapshots taken during a burst would otherwise
    hold CPython's small-object arenas of that burst (a tuple and a float each are enough),
    and the memory freed after it would stay in the RSS."""

    def __init__(
        self,
        sources: Mapping[str, Callable[[], Any]],
        interval_s: float,
        samples: int = DEFAULT_SAMPLES,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self._sources = dict(sources)
        self._now = now
        # A ring: snapshot k's time in `_ats[k]`, its encoding in `_encoded[k]`.
        self._ats = array("d", bytes(8 * samples))
        self._encoded: list[bytes] = [b""] * samples
        self._next = 0  # the slot of the next snapshot
        self._kept = 0
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> Snapshot:
        """Read every source now and keep the snapshot."""
        snapshot: Snapshot = {"at": self._now()}
        for name, source in self._sources.items():
            snapshot[name] = self._read(name, source)
        # Whatever a source returns is kept: numpy numbers as numbers, anything else
        # orjson does not know as its text, never a snapshot lost.
        encoded = orjson.dumps(snapshot, default=str, option=_ENCODING)
        with self._lock:
            slot = self._next
            self._ats[slot] = snapshot["at"]
            self._encoded[slot] = encoded
            self._next = (slot + 1) % len(self._encoded)
            self._kept = min(self._kept + 1, len(self._encoded))
        return snapshot

    def series(self, since: float | None = None) -> list[Snapshot]:
        """The kept snapshots, oldest first; with `since`, only those taken after it."""
        with self._lock:
            size = len(self._encoded)
            slots = [(self._next - self._kept + k) % size for k in range(self._kept)]
            kept = [self._encoded[k] for k in slots if since is None or self._ats[k] > since]
        return [orjson.loads(encoded) for encoded in kept]

    def start(self) -> None:
        """Sample now and then every `interval_s` on a daemon thread, until `stop()`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="shopper-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stopping.wait(self.interval_s):
                return

    def _read(self, name: str, source: Callable[[], Any]) -> Any:
        try:
            value = source()
        except Exception:
            # A failing source must not end the history: its value is null in the
            # snapshot, and the failure is logged once per outage, not every interval.
            if name not in self._failing:
                self._failing.add(name)
                log.exception("dashboard history: reading %r failed", name)
            return None
        self._failing.discard(name)
        return value
