"""What shopper's Kafka clients share: the URL, the settings, topic creation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopper.errors import ConfigError, MissingExtra
from shopper.throttled_log import RepeatFilter, ThrottledLog

try:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("confluent-kafka", "kafka") from exc

log = logging.getLogger(__name__)

DEFAULT_PORT = 9092
_RETRY_MIN_S, _RETRY_MAX_S = 0.25, 2.0  # topic creation while the broker is away
CHECK_EVERY_S = 1.0  # how often the topics are checked to be still there
_LIST_TIMEOUT_S = 2.0  # no answer this soon: the broker counts as unreachable


def parse_kafka_url(url: str) -> str:
    """`kafka://host:port[,host:port...]` -> the `bootstrap.servers` string."""
    scheme, sep, rest = url.partition("://")
    hosts = rest.strip("/")
    if scheme != "kafka" or not sep or not hosts:
        raise ConfigError(f"not a Kafka URL: {url!r}; use kafka://host:port[,host:port]")
    servers = []
    for server in hosts.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon:
            host, port = port, str(DEFAULT_PORT)
        if not host or not port.isdigit():
            raise ConfigError(f"bad broker address {server!r} in {url!r}; use host:port")
        servers.append(f"{host}:{port}")
    return ",".join(servers)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How shopper talks to Kafka. The spool is the producer's local buffer: events wait
    there while the broker is away, and publishing fails with SpoolFull once it is full."""

    bootstrap_servers: str
    partitions: int = 4
    replication_factor: int = -1  # the broker's default
    spool_max_events: int = 100_000
    spool_max_kbytes: int = 256 * 1024
    spool_timeout_s: float = 86_400.0  # 0 waits forever
    session_timeout_s: float = 10.0
    client_id: str = "shopper"
    # Where undelivered records wait on disk (None: nowhere, they are lost and counted).
    spool_dir: Path | None = None


class TopicCreator:
    """Creates topics on a background thread, retrying while the broker is unreachable, and
    keeps them: every `CHECK_EVERY_S` it asks the broker whether they are still there, and
    recreates any it lost (a broker restarted without its data), so records held for them
    are delivered instead of waiting in the producer's memory."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._wanted: set[str] = set()
        self._ready: set[str] = set()
        self._closed = False
        self._cond = threading.Condition()
        self._failures = ThrottledLog(log)
        self.recreated = 0  # topics found missing after they were made, and made again
        self.reachable = False  # the broker answered the last metadata request
        self._seen: set[str] = set()  # topics seen on the broker once (this thread's)
        self._thread = threading.Thread(target=self._run, name="shopper-topics", daemon=True)
        self._thread.start()

    def require(self, topics: Iterable[str]) -> None:
        with self._cond:
            new = set(topics) - self._wanted
            if new:
                self._wanted |= new
                self._cond.notify_all()

    def wait(self, topics: Iterable[str], timeout: float) -> bool:
        names = set(topics)
        with self._cond:
            return self._cond.wait_for(lambda: names <= self._ready or self._closed, timeout) and (
                names <= self._ready
            )

    def ready(self, topics: Iterable[str]) -> bool:
        """Whether every one of `topics` exists, as of the last check."""
        with self._cond:
            return set(topics) <= self._ready

    def missing(self) -> list[str]:
        """The topics wanted and not there (yet, or any more)."""
        with self._cond:
            return sorted(self._wanted - self._ready)

    def lost(self, topics: Iterable[str]) -> None:
        """Told by a client that the broker does not know these topics: check them now."""
        with self._cond:
            gone = set(topics) & self._ready
            if gone:
                self._ready -= gone
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def _run(self) -> None:
        # Owned by this thread: its connections close when the thread ends.
        admin = AdminClient(common_config(self._settings))
        backoff = _RETRY_MIN_S
        while True:
            with self._cond:
                # Wake for a topic to make, or to check that those made are still there.
                self._cond.wait_for(
                    lambda: self._closed or bool(self._wanted - self._ready), CHECK_EVERY_S
                )
                if self._closed:
                    return
                wanted = sorted(self._wanted)
            present = self._create(admin, wanted)
            admin.poll(0)  # serves its log lines (to `client_log`), else they pile up
            with self._cond:
                self._ready = present & self._wanted
                self._cond.notify_all()
                if present >= set(wanted):
                    backoff = _RETRY_MIN_S
                else:  # the broker is away, or refused: try again soon
                    self._cond.wait(backoff)
                    backoff = min(backoff * 2, _RETRY_MAX_S)

    def _create(self, admin: AdminClient, names: list[str]) -> set[str]:
        """The topics among `names` that exist now, creating the missing ones. Topics made
        beforehand (say, by operators, without granting shopper the right to create) count."""
        try:
            existing = set(admin.list_topics(timeout=_LIST_TIMEOUT_S).topics) & set(names)
        except KafkaException:
            self.reachable = False
            self._failures.failure("Kafka broker unreachable, topics not checked", traceback=False)
            return set()
        self.reachable = True
        self._failures.recovered("Kafka broker reachable again")
        s = self._settings
        new = [
            NewTopic(n, num_partitions=s.partitions, replication_factor=s.replication_factor)
            for n in names
            if n not in existing
        ]
        if not new:
            self._seen |= existing
            return existing
        known = self._seen
        futures = admin.create_topics(new, request_timeout=5.0, operation_timeout=5.0)
        for name, future in futures.items():
            try:
                future.result()
                existing.add(name)
                if name in known:
                    self.recreated += 1
                    log.warning("topic %s was gone from the broker: created it again", name)
                else:
                    log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existing.add(name)
                else:
                    log.warning("cannot create topic %s (retrying): %s", name, exc)
        self._seen |= existing
        return existing


# librdkafka's own log lines, through Python logging and rate-limited: while a broker is
# away it logs each refused connection, several a second per client.
client_log = logging.getLogger("shopper.kafka.client")
client_log.addFilter(RepeatFilter())


def common_config(s: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "logger": client_log,
        # Reconnect within a second of the broker coming back (the Java client's default).
        "reconnect.backoff.max.ms": 1000,
    }
