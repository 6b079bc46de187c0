"""Logging a failure that repeats (a server down, a loop retrying) without flooding the log.

The first failure of a streak is logged at once, with its traceback; repeats are logged as
one line each, at most once per interval, the interval doubling up to a ceiling, with a
count of the ones held back. `recovered` ends the streak (logging that it did) and
resets the interval, so the next outage is reported at once again; so does a quiet spell
of twice the current interval, for callers too hot to report each success.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable


class ThrottledLog:
    """One repeating failure's log lines, rate-limited with backoff. Thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        min_interval_s: float = 1.0,
        max_interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._clock = clock
        self._min_s = min_interval_s
        self._max_s = max_interval_s
        self._lock = threading.Lock()
        self._failing = False
        self._interval_s = min_interval_s
        self._next_at = float("-inf")
        self._held = 0
        self._last_at = float("-inf")
        self.failures = 0  # in this process's life, logged or not

    @property
    def failing(self) -> bool:
        return self._failing

    def failure(
        self, message: str, *args: object, level: int = logging.ERROR, traceback: bool = True
    ) -> None:
        """Log `message` (with the exception being handled, if any: its traceback on the
        first one unless `traceback` is False, as on an event loop, where formatting one
        reads source files; its type and text otherwise)."""
        now = self._clock()
        with self._lock:
            self.failures += 1
            if now - self._last_at > 2 * self._interval_s:  # a quiet spell: a new streak
                self._failing, self._interval_s, self._next_at = False, self._min_s, now
            self._last_at = now
            first = not self._failing
            self._failing = True
            if not first and now < self._next_at:
                self._held += 1
                return
            held, self._held = self._held, 0
            self._next_at = now + self._interval_s
            self._interval_s = min(self._interval_s * 2, self._max_s)
        error = sys.exc_info()[1]
        if first and traceback:
            self._log.log(level, message, *args, exc_info=error is not None)
            return
        reason = f" ({type(error).__name__}: {error})" if error is not None else ""
        more = "" if first else f"; still failing, {held} more since"
        tail = f"{reason}{more}".replace("%", "%%")
        self._log.log(level, message + tail, *args)

    def recovered(self, message: str, *args: object) -> None:
        """End a streak of failures (nothing is logged when there was none)."""
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            self._interval_s = self._min_s
            self._next_at = float("-inf")
            self._held = 0
        self._log.warning(message, *args)


class RepeatFilter(logging.Filter):
    """Lets a logger's repeating lines through at most once per `interval_s` per key (by
    default the record's first argument: librdkafka's facility, say FAIL for a refused
    connection, which it logs several times a second per client while a broker is away),
    the next one let through saying how many were held back."""

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[object, tuple[float, int]] = {}  # key -> (last passed, held since)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.levelno, args[0] if args else record.msg)
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self._interval_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it held back)"
        return True
