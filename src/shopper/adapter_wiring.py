"""Which adapter each configured URL chooses: the stream, the cache and processor state,
the model store, the flag client. Adapters with extras (Kafka, Redis, flagd) are imported
only when chosen, so the embedded mode needs none of them."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from shopper.adapters.memory_cache import InMemoryRecommendationCache
from shopper.adapters.memory_event_log import InMemoryEventLog
from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.config import Config
from shopper.errors import ConfigError
from shopper.ports.cache import PageCache, RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventLog
from shopper.ports.flags import FlagClient
from shopper.ports.model_store import ModelStore
from shopper.ports.processor_state import ProcessorState


def model_store_of(config: Config) -> ModelStore:
    from shopper.adapters.folder_model_store import FolderModelStore

    return FolderModelStore(config.models_folder)


def event_log_of(config: Config) -> EventLog:
    scheme = url_scheme(config.stream_url)
    if scheme == "memory":
        return InMemoryEventLog(
            config.partitions, config.memory_stream_retention_s, config.memory_stream_max_records
        )
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
            spool_dir=config.data_dir / "spool",
        )
        topics = [
            config.events_topic,
            config.catalog_topic,
            config.dead_letter_topic,
            config.item_events_topic,
        ]
        return KafkaEventLog(settings, topics)
    raise ConfigError(
        f"unknown stream URL scheme {scheme!r} in {config.stream_url!r}; "
        "use memory:// or kafka://host:port"
    )


def cache_and_state(
    config: Config, clock: Clock, closers: list[Callable[[], None]]
) -> tuple[RecommendationCache, ProcessorState, PageCache | None]:
    """The cache, the processor's state, and the page path's awaited read of the cache
    (None: the cache itself, read directly)."""
    scheme = url_scheme(config.cache_url)
    if scheme == "memory":
        cache = InMemoryRecommendationCache(clock, config.fresh_ttl_s, config.lkg_ttl_s)
        state = InMemoryProcessorState(
            config.popularity_half_life_s,
            clock=clock,
            session_ttl_s=config.session_ttl_s,
            dedup_ttl_s=config.dedup_ttl_s,
            unlisted_cap=config.max_unlisted_items,
        )
        return cache, state, None
    if scheme in ("redis", "rediss"):
        from shopper.errors import MissingExtra

        try:
            from shopper.adapters.redis_cache import RedisRecommendationCache, redis_from_url
            from shopper.adapters.redis_page_cache import RedisPageCache
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
            unlisted_cap=config.max_unlisted_items,
        )
        closers.append(client.close)
        # Connects on the first page read, on the API's event loop: none in a processor.
        pages = RedisPageCache(
            config.cache_url,
            prefix,
            config.page_near_cache_max_age_s,
            page_timeout_s=config.page_redis_timeout_s,
            fallback_max_age_s=config.page_fallback_max_age_s,
        )
        return redis_cache, redis_state, pages
    raise ConfigError(
        f"unknown cache URL scheme {scheme!r} in {config.cache_url!r}; "
        "use memory:// or redis://host:port/db"
    )


def url_scheme(url: str) -> str:
    return urlparse(url).scheme or url


def flag_client(config: Config) -> FlagClient:
    """The experiment's flag evaluation: OpenFeature's flagd provider, in process, on the
    flag file (`config.flags_path`; a missing file is the default experiment, champion
    only) or, with `flags_url=flagd://HOST:PORT`, on the flags a flagd daemon serves."""
    from shopper.adapters.openfeature_flags import FlagFileSource, OpenFeatureFlagClient

    daemon = config.flagd_address
    if daemon is None:
        return OpenFeatureFlagClient(
            FlagFileSource(config.flags_path), cache_ttl_s=config.session_ttl_s
        )
    from shopper.adapters.flagd_daemon import FlagdDaemonSource

    return OpenFeatureFlagClient(FlagdDaemonSource(*daemon), cache_ttl_s=config.session_ttl_s)
