"""Thread priority for background work that shares a process with the page path."""

from __future__ import annotations

import os
import threading

BACKGROUND_NICENESS = 5  # 10 starved the processor in the demo; 5 keeps lists ~0.2 s fresh


def lower_this_thread(niceness: int = BACKGROUND_NICENESS) -> None:
    """Lower the calling thread's OS priority (Linux schedules threads one by one): on a
    busy core the kernel then lets a page read's thread run first."""
    if niceness and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


# Set once this process builds an API app: its page reads then share the GIL with the
# background work, which hands the GIL over regularly. A process without pages (a
# processor-only one) skips those hand-overs: each is a system call, and on a busy machine
# the kernel may take the core away with it.
PAGES_SERVED_HERE = threading.Event()
