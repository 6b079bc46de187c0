"""The memory allocator a long-lived `shopper serve` process runs on.

CPython's small-object allocator (pymalloc) takes memory in 1 MiB arenas and returns an
arena only once every object in it is gone: after a burst of shoppers expires, the few
objects born in the burst that outlive it keep part of its arenas, so the process stays
16% to 34% above where it started, creeping up wave after wave (docs/memory.md). glibc's
malloc gives that memory back but costs the embedded processor a quarter of its speed.
jemalloc does both: it keeps small objects in slabs of a few pages, gives a slab back as
soon as it is empty, and is as fast as pymalloc on the processor (`make bench`).

So `shopper serve` runs itself on jemalloc where the system has it (Debian and Ubuntu:
`apt-get install libjemalloc2`; Alpine, Fedora: `jemalloc`): it starts again at once, in
the same process (same PID, by `execve`), with jemalloc preloaded and CPython's objects
allocated by it (`PYTHONMALLOC=malloc`). The sweeper asks it to return freed pages when a
wave of expiries ends (`shopper.adapters.memory_expiry.trim_memory`). The setting
`allocator` says what to do:

- `auto` (the default): jemalloc when the system has it, else CPython's own allocator,
  with a warning that a burst's memory stays with the process;
- `jemalloc`: jemalloc, or refuse to start;
- `python`: leave the process as started (CPython's allocator, or whatever
  `PYTHONMALLOC` says).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shopper.errors import ConfigError

log = logging.getLogger(__name__)

# Set in the environment of the process started again, so it never starts itself again.
STARTED_AGAIN_ENV = "SHOPPER_ALLOCATOR_STARTED"
# One arena: under the GIL one thread allocates at a time, so more buy no speed (measured:
# the same events/s), and with one, a wave's freed slabs are not spread over a thread's
# arena each. Freed pages go back at once when purged (muzzy_decay_ms:0, jemalloc 5's
# default, spelled out), not lazily with MADV_FREE, which leaves them in RSS.
JEMALLOC_CONF = "narenas:1,muzzy_decay_ms:0"
# What says which allocator a process runs on.
ALLOCATOR_ENV = (
    "PYTHONMALLOC",
    "LD_PRELOAD",
    "MALLOC_CONF",
    "SHOPPER_ALLOCATOR",
    STARTED_AGAIN_ENV,
)
INSTALL_HINT = "apt-get install libjemalloc2 on Debian or Ubuntu, jemalloc on Alpine or Fedora"


@dataclass(frozen=True)
class Plan:
    """Start again with `env`, or (env None) carry on as started, saying `message`."""

    env: dict[str, str] | None
    message: str
    warn: bool = False


def jemalloc_library() -> str | None:
    """The system's jemalloc, as a name the dynamic loader finds (`libjemalloc.so.2`)."""
    return ctypes.util.find_library("jemalloc")


def jemalloc_active() -> bool:
    """Whether CPython's objects are allocated by jemalloc: it is loaded (the process
    exports `mallctl`) and CPython allocates with `malloc` (read from PYTHONMALLOC at start)."""
    return hasattr(ctypes.CDLL(None), "mallctl") and os.environ.get("PYTHONMALLOC") == "malloc"


def jemalloc_env(library: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with jemalloc preloaded and CPython's objects allocated by it."""
    preload = " ".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    return {
        **env,
        "LD_PRELOAD": preload,
        "PYTHONMALLOC": "malloc",
        "MALLOC_CONF": env.get("MALLOC_CONF") or JEMALLOC_CONF,
    }


def allocator_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a process to start on allocator `name`: `auto` (`serve` chooses, as it
    would with no setting), `jemalloc` (the system's, as `serve` starts itself on), or
    CPython's `pymalloc` or `malloc` (glibc's), with what `env` said of allocators
    dropped; for benchmarks and tests that compare them."""
    clean = {k: v for k, v in env.items() if k not in ALLOCATOR_ENV}
    if name == "auto":
        return clean
    if name != "jemalloc":
        return {**clean, "PYTHONMALLOC": name, "SHOPPER_ALLOCATOR": "python"}
    library = jemalloc_library()
    if library is None:
        raise ConfigError(f"jemalloc was not found ({INSTALL_HINT})")
    return {**jemalloc_env(library, clean), "SHOPPER_ALLOCATOR": "jemalloc"}


def plan(setting: str, env: Mapping[str, str], library: str | None, active: bool) -> Plan:
    """What `serve` does about its allocator, given the `allocator` setting, its
    environment, the system's jemalloc (None: not found) and whether it runs on it."""
    if setting == "python":
        return Plan(None, "memory allocator: as started (allocator = python)")
    if active:
        return Plan(None, "memory allocator: jemalloc: freed memory goes back to the system")
    if library is not None and STARTED_AGAIN_ENV not in env:
        return Plan({**jemalloc_env(library, env), STARTED_AGAIN_ENV: "1"}, "")
    why = (
        f"{library} was preloaded but is not in use"
        if library is not None
        else f"jemalloc was not found ({INSTALL_HINT})"
    )
    if setting == "jemalloc":
        raise ConfigError(f"allocator = jemalloc, but {why}")
    return Plan(
        None,
        f"memory allocator: CPython's own, since {why}: memory that a burst of shoppers "
        "took stays with the process after their TTLs (docs/memory.md); set "
        "SHOPPER_ALLOCATOR=python to say that is intended",
        warn=True,
    )


def _release() -> Callable[[], object] | None:
    process = ctypes.CDLL(None)
    mallctl = getattr(process, "mallctl", None)
    if mallctl is not None:
        # jemalloc returns a page once it has been free for `dirty_decay_ms` (10 s), and
        # only while it allocates: a process gone quiet after a wave would keep them.
        # Purging every arena (MALLCTL_ARENAS_ALL) returns them now.
        mallctl.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        return lambda: mallctl(b"arena.4096.purge", None, None, None, 0)
    trim = getattr(process, "malloc_trim", None)
    if trim is not None:  # glibc's malloc
        trim.argtypes = [ctypes.c_size_t]
        return lambda: trim(0)
    return None  # another allocator: it returns memory itself


_RELEASE = _release()


def release_free_memory() -> None:
    """Ask the allocator to give the memory it holds free back to the system."""
    if _RELEASE is not None:
        _RELEASE()


def run_on_chosen_allocator(
    setting: str, execve: Callable[[str, list[str], dict[str, str]], object] = os.execve
) -> None:
    """Start this process again on jemalloc if the setting and the system say so (this
    call then does not return), else log which allocator it runs on."""
    chosen = plan(setting, os.environ, jemalloc_library(), jemalloc_active())
    # Read: a `serve` this process starts (not started again itself) may choose anew.
    os.environ.pop(STARTED_AGAIN_ENV, None)
    if chosen.env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], chosen.env)
        return
    (log.warning if chosen.warn else log.info)("%s", chosen.message)
