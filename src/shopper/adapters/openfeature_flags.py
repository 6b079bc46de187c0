"""Flag client on OpenFeature with the flagd provider, evaluating a flag file in process.

The file is in flagd's own format (`flagd_format`), so a flagd daemon could serve it and
the provider be switched to RPC by configuration alone. The provider's file watcher polls
the file's mtime every `poll_ms` and emits PROVIDER_CONFIGURATION_CHANGED when it loads a
new version; that clears this client's per-shopper cache, so a ramp or a kill reaches the
page within about `poll_ms`.

States, and what `assign` answers in each:
- no flag file: the champion of `DEFAULT_EXPERIMENT`, from code, and no provider at all
  (flagd would log an error every poll); a thread waits for the file to appear;
- a file flagd cannot read (garbage, deleted): the flags last loaded keep serving, and
  before any were loaded the champion does;
- an evaluation error of any kind: the champion of the definition in force. Never raises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

from cachetools import LRUCache
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.provider.no_op_provider import NoOpProvider

from shopper.adapters.flagd_format import VARIANT_FLAG, assignment_of, parse_flag_text
from shopper.domain.experiment import DEFAULT_EXPERIMENT, Experiment, ExperimentError
from shopper.ports.flags import Assignment

log = logging.getLogger(__name__)

POLL_MS = 1000  # flagd's file watcher looks at the file's mtime this often
CACHE_SIZE = 100_000  # shoppers whose assignment is remembered (~250 bytes each with the id)
# The events after which the flags in force may differ from the ones the cache was filled
# under. Not PROVIDER_ERROR: flagd keeps its flags through an error (and would clear the
# cache on every poll of an unreadable file).
_FLAG_EVENTS = (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)


class OpenFeatureFlagClient:
    """`ports.flags.FlagClient` on the flag file at `path`, through an OpenFeature client
    of a domain of its own. `assign` is cached per shopper (`cache_size`, 0: no cache)."""

    def __init__(self, path: Path, *, poll_ms: int = POLL_MS, cache_size: int = CACHE_SIZE) -> None:
        _quiet_repeated_provider_logs()
        self._path = Path(path)
        self._poll_ms = poll_ms
        # A domain of its own: two clients in one process (or the application's default
        # provider) never share flags.
        self._domain = f"shopper-flags-{uuid.uuid4().hex}"
        self._client = api.get_client(domain=self._domain)
        self._provider: FlagdProvider | None = None
        self._cache: LRUCache[str, Assignment] | None = (
            LRUCache(cache_size) if cache_size > 0 else None  # 0: evaluate every time
        )
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped with every clear; a stale evaluation is not cached
        self._read_lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._current = DEFAULT_EXPERIMENT
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        for event in _FLAG_EVENTS:
            self._client.add_handler(event, self._on_flags_event)
        self._refresh()
        if self._path.exists():
            self._start_provider()
        else:
            threading.Thread(
                target=self._wait_for_file, name="shopper-flag-file-wait", daemon=True
            ).start()

    def assign(self, subject: str) -> Assignment:
        if self._cache is None:
            return self._evaluate(subject)
        with self._cache_lock:
            cached = self._cache.get(subject)
            generation = self._generation
        if cached is not None:
            return cached
        assignment = self._evaluate(subject)
        with self._cache_lock:
            if generation == self._generation:  # not evaluated under flags since replaced
                self._cache[subject] = assignment
        return assignment

    def experiment(self) -> Experiment:
        """The definition in the flag file (re-read when the file changes); the last one
        that could be read while the file cannot be, `DEFAULT_EXPERIMENT` before any."""
        self._refresh()
        return self._current

    def close(self) -> None:
        with self._close_lock:  # idempotent; also called by a provider started meanwhile
            if not self._closed.is_set():
                self._closed.set()
                for event in _FLAG_EVENTS:
                    self._client.remove_handler(event, self._on_flags_event)
            provider, self._provider = self._provider, None
        if provider is not None:
            # The SDK shuts the replaced provider (its file watcher) down.
            api.set_provider(NoOpProvider(), self._domain)

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
        self._refresh()
        self._clear_cache()

    def _clear_cache(self) -> None:
        with self._cache_lock:
            self._generation += 1
            if self._cache is not None:
                self._cache.clear()

    def _refresh(self) -> None:
        with self._read_lock:
            try:
                st = os.stat(self._path)
                stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
                if stamp == self._stamp:
                    return
                self._stamp = stamp
                text = self._path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return  # missing or unreadable: the last definition read stays
            try:
                self._current = parse_flag_text(text, f"the flag file {self._path}")
            except ExperimentError as exc:  # once per version of the file
                log.warning("%s; the last good definition stays in force", exc)

    def _start_provider(self) -> None:
        provider = FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=str(self._path),
            deadline_ms=self._poll_ms,
        )
        try:
            api.set_provider_and_wait(provider, self._domain)
        except Exception as exc:  # e.g. garbage in the file: its watcher keeps looking
            log.warning("flag file %s not loaded yet (%s); the champion answers", self._path, exc)
        # Evaluated through the provider from here on; what was cached before is dropped
        # even if its READY handler already ran.
        self._provider = provider
        self._clear_cache()
        if self._closed.is_set():  # closed while it started
            self.close()

    def _wait_for_file(self) -> None:
        while not self._closed.wait(self._poll_ms / 1000):
            if self._path.exists():
                self._start_provider()
                return


class _RepeatFilter(logging.Filter):
    """Lets each message of flagd's file watcher through once a minute, without its
    traceback: it reports an unreadable file on every poll, with the same words."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        now = time.monotonic()
        if now - self._last.get(message, -self._every_s) < self._every_s:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[message] = now
        record.exc_info = None
        record.exc_text = None
        return True


def _quiet_repeated_provider_logs() -> None:
    logger = logging.getLogger("openfeature.contrib")
    if not any(isinstance(f, _RepeatFilter) for f in logger.filters):
        logger.addFilter(_RepeatFilter())
