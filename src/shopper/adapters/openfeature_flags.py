"""Flag client on OpenFeature with the flagd provider, evaluating the experiment's flags in
process, from one of two sources:

- the flag file (`FlagFileSource`, the default): the provider's file watcher polls its mtime
  every `poll_ms` and loads each new version;
- a flagd daemon (`adapters.flagd_daemon.FlagdDaemonSource`, `flags_url=flagd://`): the
  provider's in-process resolver syncs the same JSON from the daemon's sync service.

Either way the flags are flagd's own format (`flagd_format`) and evaluated by the same core,
so a shopper's variant does not depend on the source. When the provider has loaded a new
version it emits PROVIDER_CONFIGURATION_CHANGED, which re-reads the definition in force
(`experiment()`) and clears this client's per-shopper cache, so a ramp or a kill reaches the
page within about a second.

States, and what `assign` answers in each:
- no flags yet (no file: no provider at all, flagd would log an error every poll, and a
  thread waits for the file; a daemon not reached yet): the champion of `DEFAULT_EXPERIMENT`;
- flags that cannot be read (a garbage or deleted file, a daemon gone away): the flags last
  loaded keep serving, and before any were loaded the champion does;
- an evaluation error of any kind: the champion of the definition in force. Never raises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.provider.no_op_provider import NoOpProvider

from shopper.adapters.flagd_format import VARIANT_FLAG, assignment_of, parse_flag_text
from shopper.adapters.memory_expiry import ExpiringMap, Sweeper, sweep
from shopper.domain.experiment import DEFAULT_EXPERIMENT, Experiment, ExperimentError
from shopper.ports.flags import Assignment

log = logging.getLogger(__name__)

POLL_MS = 1000  # flagd's file watcher looks at the file's mtime this often
CACHE_SIZE = 100_000  # shoppers whose assignment is remembered (~250 bytes each with the id)
CACHE_TTL_S = 7 * 86400.0  # and for how long (the session TTL by default)
# The events after which the flags in force may differ from the ones the cache was filled
# under. Not PROVIDER_ERROR: flagd keeps its flags through an error (and would clear the
# cache on every poll of an unreadable file).
_FLAG_EVENTS = (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
_TROUBLE_EVENTS = (ProviderEvent.PROVIDER_STALE, ProviderEvent.PROVIDER_ERROR)


class FlagSource(Protocol):
    """Where an `OpenFeatureFlagClient`'s flags come from. `str()` names it in logs."""

    read_on_demand: bool
    """`experiment()` reads the definition on every call (cheap: a file's stat), rather
    than only when the provider reports new flags."""

    def available(self) -> bool:
        """Whether the provider can start now; asked every `POLL_MS` until it can."""
        ...

    def provider(self) -> FlagdProvider:
        """A provider on this source (the client starts and shuts it down)."""
        ...

    def read(self) -> str | None:
        """The flag JSON in force if it changed since the last read; None when it did not,
        or cannot be read (logged by the source when that is news)."""
        ...

    def close(self) -> None: ...


class FlagFileSource:
    """The flag file at `path`, polled every `poll_ms` by flagd's file watcher."""

    read_on_demand = True

    def __init__(self, path: Path, poll_ms: int = POLL_MS) -> None:
        self.path = Path(path)
        self._poll_ms = poll_ms
        self._stamp: tuple[int, int, int] | None = None

    def __str__(self) -> str:
        return f"the flag file {self.path}"

    def available(self) -> bool:
        return self.path.exists()

    def provider(self) -> FlagdProvider:
        return FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=str(self.path),
            deadline_ms=self._poll_ms,
        )

    def read(self) -> str | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None  # missing or unreadable: flagd's watcher says so (once a minute)

    def close(self) -> None:
        pass


class OpenFeatureFlagClient:
    """`ports.flags.FlagClient` on `source` (a path: the flag file there), through an
    OpenFeature client of a domain of its own. `assign` is cached per shopper
    (`cache_size`, 0: no cache)."""

    def __init__(
        self,
        source: FlagSource | Path,
        *,
        cache_size: int = CACHE_SIZE,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        quiet_repeated_logs(logging.getLogger("openfeature.contrib"), traceback=False)
        quiet_repeated_logs(log)
        self._source = FlagFileSource(source) if isinstance(source, Path) else source
        # A domain of its own: two clients in one process (or the application's default
        # provider) never share flags.
        self._domain = f"shopper-flags-{uuid.uuid4().hex}"
        self._client = api.get_client(domain=self._domain)
        self._provider: FlagdProvider | None = None
        # An assignment is forgotten `cache_ttl_s` after it was made (the session TTL),
        # swept every second, and the oldest go first past `cache_size`. Not cachetools'
        # TTLCache: its read costs the page about 2.7 us, this one's a dict lookup.
        self._cache: ExpiringMap[str, Assignment] | None = (
            ExpiringMap(cache_ttl_s) if cache_size > 0 else None  # 0: evaluate every time
        )
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        Sweeper.register(self.expire_cache)
        self._generation = 0  # bumped with every clear; a stale evaluation is not cached
        self._read_lock = threading.Lock()
        self._current = DEFAULT_EXPERIMENT
        self._troubled = False  # the provider reported trouble since it last loaded flags
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        for event in _FLAG_EVENTS:
            self._client.add_handler(event, self._on_flags_event)
        for event in _TROUBLE_EVENTS:
            self._client.add_handler(event, self._on_trouble)
        if self._source.available():
            self._start_provider()
        else:
            threading.Thread(
                target=self._wait_for_source, name="shopper-flag-source-wait", daemon=True
            ).start()

    def assign(self, subject: str) -> Assignment:
        if self._cache is None:
            return self._evaluate(subject)
        with self._cache_lock:
            cached = self._cache.get(subject, time.monotonic())
            generation = self._generation
        if cached is not None:
            return cached
        assignment = self._evaluate(subject)
        with self._cache_lock:
            if generation == self._generation:  # not evaluated under flags since replaced
                self._cache.put(subject, assignment, time.monotonic())
                if len(self._cache) > self._cache_size:
                    self._cache.entries.popitem(last=False)
        return assignment

    def experiment(self) -> Experiment:
        """The definition the source serves (a file re-read when it changes, a daemon's
        fetched when the provider syncs new flags); the last one that could be read while
        the source cannot be, `DEFAULT_EXPERIMENT` before any."""
        if self._source.read_on_demand:
            self._refresh()
        return self._current

    def close(self) -> None:
        with self._close_lock:  # idempotent; also called by a provider started meanwhile
            first = not self._closed.is_set()
            if first:
                self._closed.set()
                for event in _FLAG_EVENTS:
                    self._client.remove_handler(event, self._on_flags_event)
                for event in _TROUBLE_EVENTS:
                    self._client.remove_handler(event, self._on_trouble)
            provider, self._provider = self._provider, None
        if provider is not None:
            # The SDK shuts the replaced provider (its watcher or sync stream) down.
            api.set_provider(NoOpProvider(), self._domain)
        if first:
            self._source.close()

    def _evaluate(self, subject: str) -> Assignment:
        champion = self._current.champion
        if self._provider is None:
            return assignment_of(None, None, champion)
        try:
            details = self._client.get_string_details(
                VARIANT_FLAG, champion.model, EvaluationContext(targeting_key=subject)
            )
        except Exception:  # the page path never fails on a flag
            log.exception("flag evaluation failed; the champion answers")
            return assignment_of(None, None, champion)
        if details.error_code is not None:
            return assignment_of(None, None, champion)
        return assignment_of(details.variant, details.value, champion)

    def _on_flags_event(self, details: EventDetails) -> None:
        if self._provider is None:  # not started: `_start_provider` reads, and clears
            return
        if self._troubled:
            self._troubled = False
            log.info("flags from %s loaded again", self._source)
        self._refresh()
        self._clear_cache()

    def _on_trouble(self, details: EventDetails) -> None:
        self._troubled = True
        log.warning(
            "flags from %s unavailable (%s); the flags last loaded keep serving "
            "(the champion before any)",
            self._source,
            details.message or "no reason given",
        )

    def expire_cache(self) -> int:
        """Drop the assignments older than the cache's TTL (the `Sweeper` calls this
        every second); returns how many."""
        if self._cache is None:
            return 0
        return sweep(self._cache_lock, time.monotonic(), self._cache)

    def _clear_cache(self) -> None:
        with self._cache_lock:
            self._generation += 1
            if self._cache is not None:
                self._cache.entries.clear()

    def _refresh(self) -> None:
        with self._read_lock:  # one read at a time: a slower, older one never lands last
            text = self._source.read()
            if text is None:
                return  # unchanged or unreadable: the last definition read stays
            try:
                self._current = parse_flag_text(text, str(self._source))
            except ExperimentError as exc:  # once per version
                log.warning("%s; the last good definition stays in force", exc)

    def _start_provider(self) -> None:
        provider = self._source.provider()
        try:
            api.set_provider_and_wait(provider, self._domain)
            loaded = True
        except Exception:  # logged by `_on_trouble`; the provider keeps trying
            loaded = False
        # Evaluated through the provider from here on; what was cached before is dropped
        # even if its READY handler already ran.
        self._provider = provider
        if loaded:
            self._refresh()
        self._clear_cache()
        if self._closed.is_set():  # closed while it started
            self.close()

    def _wait_for_source(self) -> None:
        while not self._closed.wait(POLL_MS / 1000):
            if self._source.available():
                self._start_provider()
                return


class _RepeatFilter(logging.Filter):
    """Lets each message through once a minute: flagd's file watcher reports an unreadable
    file on every poll, and a daemon gone away is reported on every reconnect."""

    def __init__(self, every_s: float = 60.0, traceback: bool = True) -> None:
        super().__init__()
        self._every_s = every_s
        self._traceback = traceback
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(message, -self._every_s) < self._every_s:
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[message] = now
        if not self._traceback:
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_repeated_logs(logger: logging.Logger, *, traceback: bool = True) -> None:
    """Each of `logger`'s messages at most once a minute (`traceback=False`: without its
    traceback, for flagd's own, which repeat one per poll)."""
    if not any(isinstance(f, _RepeatFilter) for f in logger.filters):
        logger.addFilter(_RepeatFilter(traceback=traceback))
