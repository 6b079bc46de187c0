"""Runs a module (`python -m tests.chaos.jumped_clock MODULE ARGS...`) with a wall clock the
chaos test can jump: `time.time()` and `time.time_ns()` (what shopper's Clock port, list
stamps, freshness and dedup buckets read) are offset by the seconds written in the file
named by `CHAOS_CLOCK_FILE`, read again at most every 0.2 s.

The closest honest equivalent of a server clock jump here: libfaketime 0.9.10 cannot leave
the monotonic clock alone under Python 3.11 (its `clock_nanosleep` breaks `time.sleep`,
libfaketime issue 426), and a monotonic clock that jumps is not what a server sees. Not
shifted: C-level `datetime.now()` (audit lines, server-made event times) and the brokers'
and Redis's clocks.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import threading
import time
from pathlib import Path

REREAD_S = 0.2


def install(path: Path) -> None:
    real_time, real_time_ns, monotonic = time.time, time.time_ns, time.monotonic
    lock = threading.Lock()
    state = {"offset": 0.0, "read_at": float("-inf")}

    def offset() -> float:
        now = monotonic()
        if now - state["read_at"] > REREAD_S:
            with lock:
                with contextlib.suppress(OSError, ValueError):  # mid-write: next time
                    state["offset"] = float(path.read_text().strip() or 0)
                state["read_at"] = now
        return state["offset"]

    def fake_time() -> float:
        return real_time() + offset()

    def fake_time_ns() -> int:
        return real_time_ns() + int(offset() * 1e9)

    time.time = fake_time
    time.time_ns = fake_time_ns


def main() -> None:
    install(Path(os.environ["CHAOS_CLOCK_FILE"]))
    module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
