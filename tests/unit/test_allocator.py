"""`shopper.allocator`: which allocator `serve` starts itself on, and giving freed memory
back to the system on jemalloc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shopper.allocator import (
    JEMALLOC_CONF,
    STARTED_AGAIN_ENV,
    jemalloc_env,
    jemalloc_library,
    plan,
    run_on_chosen_allocator,
)
from shopper.errors import ConfigError

LIB = "libjemalloc.so.2"


def test_auto_starts_again_on_jemalloc_where_the_system_has_it() -> None:
    chosen = plan("auto", {"PATH": "/bin"}, LIB, active=False)
    assert chosen.env == {
        "PATH": "/bin",
        "LD_PRELOAD": LIB,
        "PYTHONMALLOC": "malloc",
        "MALLOC_CONF": JEMALLOC_CONF,
        STARTED_AGAIN_ENV: "1",
    }


def test_a_preload_and_a_jemalloc_conf_of_the_users_are_kept() -> None:
    env = jemalloc_env(LIB, {"LD_PRELOAD": "libtrace.so", "MALLOC_CONF": "narenas:2"})
    assert env["LD_PRELOAD"] == f"{LIB} libtrace.so"
    assert env["MALLOC_CONF"] == "narenas:2"


def test_a_process_already_on_jemalloc_carries_on() -> None:
    chosen = plan("jemalloc", {STARTED_AGAIN_ENV: "1"}, LIB, active=True)
    assert chosen.env is None and not chosen.warn
    assert "jemalloc" in chosen.message


def test_python_leaves_the_process_as_started() -> None:
    chosen = plan("python", {}, LIB, active=False)
    assert chosen.env is None and not chosen.warn


def test_auto_without_jemalloc_carries_on_with_a_warning_that_says_how_to_get_it() -> None:
    chosen = plan("auto", {}, None, active=False)
    assert chosen.env is None and chosen.warn
    assert "apt-get install libjemalloc2" in chosen.message
    assert "SHOPPER_ALLOCATOR=python" in chosen.message


def test_jemalloc_required_but_missing_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="allocator = jemalloc, but jemalloc was not found"):
        plan("jemalloc", {}, None, active=False)


def test_a_process_started_again_never_starts_itself_again() -> None:
    # The preload did not take (a loader that ignores LD_PRELOAD, say): no loop.
    again = {STARTED_AGAIN_ENV: "1", "LD_PRELOAD": LIB}
    chosen = plan("auto", again, LIB, active=False)
    assert chosen.env is None and chosen.warn
    assert "preloaded but is not in use" in chosen.message
    with pytest.raises(ConfigError, match="preloaded but is not in use"):
        plan("jemalloc", again, LIB, active=False)


def test_starting_again_runs_the_same_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("shopper.allocator.jemalloc_library", lambda: LIB)
    monkeypatch.setattr("shopper.allocator.jemalloc_active", lambda: False)
    monkeypatch.delenv(STARTED_AGAIN_ENV, raising=False)
    run_on_chosen_allocator("auto", execve=lambda *a: started.append(a))
    [(program, argv, env)] = started
    assert program == sys.executable
    assert argv == [sys.executable, *sys.orig_argv[1:]]
    assert env["PYTHONMALLOC"] == "malloc" and env["LD_PRELOAD"].startswith(LIB)


RELEASE_PROBE = """
import sys
from shopper.allocator import release_free_memory

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

release_free_memory()
base = rss()
wave = [{"n": n, "s": str(n)} for n in range(300_000)]
peak = rss()
del wave
freed = rss()
release_free_memory()
print(base, peak, freed, rss())
"""


def test_on_jemalloc_freed_memory_goes_back_to_the_system_when_released() -> None:
    library = jemalloc_library()
    assert library is not None, "jemalloc is not installed: `make test` installs libjemalloc2"
    env = {**jemalloc_env(library, os.environ), "MALLOC_CONF": JEMALLOC_CONF}
    done = subprocess.run(
        [sys.executable, "-c", RELEASE_PROBE], env=env, capture_output=True, text=True, check=True
    )
    base, peak, freed, released = map(float, done.stdout.split())
    grown = peak - base
    assert grown > 50, f"the wave did not grow the process: {done.stdout}"
    # Freed but held: jemalloc returns pages only after its decay time, as it allocates.
    assert freed - base > grown / 2, done.stdout
    assert released - base < grown / 5, done.stdout
