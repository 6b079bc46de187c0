"""The memory allocator of a `shopper serve` that holds the shop's state in its process.

In the embedded mode (`memory://` cache or stream) every shopper's session, lists and
events live in the server process until their TTLs expire. CPython's own small-object
allocator (pymalloc) gives a 1 MiB arena back only once every object in it is gone, and the
few objects that outlive a burst of shoppers (popularity counters, the latest popular lists)
pin most of its arenas: the freed memory is reused but never returned, and RSS stays at the
burst's peak. glibc's malloc, with the expiry sweeper's `malloc_trim`, returns it
(docs/memory.md has the measurements). So `shopper serve` in the embedded mode starts itself
again with `PYTHONMALLOC=malloc`, unless the environment already names an allocator (set
`PYTHONMALLOC=pymalloc` to keep CPython's). On Redis, the state lives in Redis and the
process keeps CPython's allocator.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlparse

from shopper.config import Config

log = logging.getLogger(__name__)

ENV = "PYTHONMALLOC"
EMBEDDED_ALLOCATOR = "malloc"


def holds_state(config: Config) -> bool:
    """Whether this process keeps the shop's state: the embedded cache or stream."""
    return any(urlparse(url).scheme == "memory" for url in (config.cache_url, config.stream_url))


def allocator_to_start(config: Config, environ: Mapping[str, str]) -> str | None:
    """The allocator to start again on, or None to go on as started."""
    if environ.get(ENV) or not holds_state(config):
        return None  # chosen by whoever started us, or not ours to choose
    return EMBEDDED_ALLOCATOR


def restart_on_allocator(config: Config) -> None:
    """Replace this process by the same command on the allocator its mode wants, if any.
    Only for the `shopper` program itself (its first act, before any thread or file)."""
    allocator = allocator_to_start(config, os.environ)
    if allocator is None or not sys.orig_argv:
        return
    log.debug("starting again with %s=%s", ENV, allocator)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, ENV: allocator})
