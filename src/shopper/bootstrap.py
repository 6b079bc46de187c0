"""The composition root: builds every part of shopper from one Config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.adapters.system_clock import SystemClock
from shopper.api.app import create_app
from shopper.config import Config
from shopper.errors import ConfigError
from shopper.ports.cache import RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventLog
from shopper.ports.processor_state import ProcessorState
from shopper.services.ingest import EventIngest
from shopper.services.processor import (
    Processor,
    ProcessorRunner,
    ProcessorSettings,
    summarize_stats,
)
from shopper.services.serving import RecommendationReader

PROCESSOR_GROUP = "shopper-processor"


@dataclass
class System:
    """Everything one shopper process runs, wired together."""

    config: Config
    clock: Clock
    event_log: EventLog
    cache: RecommendationCache
    state: ProcessorState
    ingest: EventIngest
    reader: RecommendationReader
    runners: list[ProcessorRunner] = field(default_factory=list)

    def app(self) -> FastAPI:
        return create_app(
            self.ingest,
            self.reader,
            default_k=self.config.default_k,
            max_k=self.config.max_k,
            health={
                "stream": _scheme(self.config.stream_url),
                "cache": _scheme(self.config.cache_url),
            },
            stats=self.processor_stats,
        )

    def processor_stats(self) -> dict[str, Any]:
        """The summed counters of this process's processors."""
        return summarize_stats([r.processor.stats for r in self.runners])

    def processor(self) -> Processor:
        """A new member of the processor consumer group."""
        c = self.config
        consumer = self.event_log.subscribe([c.events_topic, c.catalog_topic], PROCESSOR_GROUP)
        settings = ProcessorSettings(
            dead_letter_topic=c.dead_letter_topic,
            list_size=c.list_size,
            max_events=c.microbatch_max_events,
            wait_s=c.microbatch_wait_s,
            popular_refresh_s=c.popular_refresh_s,
        )
        return Processor(consumer, self.event_log, self.state, self.cache, self.clock, settings)

    def start_processor(self) -> ProcessorRunner:
        runner = ProcessorRunner(self.processor())
        runner.start()
        self.runners.append(runner)
        return runner

    def close(self) -> None:
        for runner in self.runners:
            runner.stop()
        self.runners.clear()
        self.event_log.flush()
        self.event_log.close()


def build_system(config: Config, clock: Clock | None = None) -> System:
    clock = clock or SystemClock()
    event_log = _event_log(config)
    cache, state = _cache_and_state(config, clock)
    ingest = EventIngest(
        event_log, cache, config.events_topic, config.catalog_topic, config.max_batch
    )
    return System(
        config, clock, event_log, cache, state, ingest, RecommendationReader(cache, clock)
    )


def _event_log(config: Config) -> EventLog:
    scheme = _scheme(config.stream_url)
    if scheme == "memory":
        return InMemoryEventLog(partitions=config.partitions)
    if scheme == "kafka":
        # Imported here: embedded mode must not need confluent-kafka (the module raises
        # MissingExtra when it is not installed).
        from shopper.adapters.kafka_event_log import KafkaEventLog, KafkaSettings, parse_kafka_url

        settings = KafkaSettings(
            parse_kafka_url(config.stream_url),
            partitions=config.partitions,
            spool_max_events=config.spool_max_events,
            spool_max_kbytes=config.spool_max_kbytes,
            spool_timeout_s=config.spool_timeout_s,
            session_timeout_s=config.group_session_timeout_s,
        )
        topics = [config.events_topic, config.catalog_topic, config.dead_letter_topic]
        return KafkaEventLog(settings, topics)
    raise ConfigError(
        f"unknown stream URL scheme {scheme!r} in {config.stream_url!r}; "
        "use memory:// or kafka://host:port"
    )


def _cache_and_state(config: Config, clock: Clock) -> tuple[RecommendationCache, ProcessorState]:
    scheme = _scheme(config.cache_url)
    if scheme == "memory":
        cache = InMemoryRecommendationCache(clock, config.fresh_ttl_s, config.lkg_ttl_s)
        return cache, InMemoryProcessorState(config.popularity_half_life_s)
    if scheme in ("redis", "rediss"):
        from shopper.errors import MissingExtra

        try:
            from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
            from shopper.adapters.redis_processor_state import RedisProcessorState
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise MissingExtra("redis", "redis") from None
        client = redis_from_url(config.cache_url)
        prefix = config.redis_key_prefix
        redis_cache = RedisRecommendationCache(
            client, clock, config.fresh_ttl_s, config.lkg_ttl_s, prefix=prefix
        )
        redis_state = RedisProcessorState(
            client,
            clock,
            config.popularity_half_life_s,
            prefix=prefix,
            session_ttl_s=config.session_ttl_s,
            dedup_ttl_s=config.dedup_ttl_s,
            co_occurrence_cap=config.co_occurrence_cap,
        )
        return redis_cache, redis_state
    raise ConfigError(
        f"unknown cache URL scheme {scheme!r} in {config.cache_url!r}; "
        "use memory:// or redis://host:port/db"
    )


def _scheme(url: str) -> str:
    return urlparse(url).scheme or url
