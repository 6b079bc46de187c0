"""The composition root: builds every part of shopper from one Config."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from shopper.adapter_wiring import (
    cache_and_state,
    event_log_of,
    flag_client,
    model_store_of,
    url_scheme,
)
from shopper.adapters.flag_file import FlagFile
from shopper.adapters.jsonl_list_log import JsonlListLog
from shopper.adapters.system_clock import SystemClock
from shopper.api.app import create_app, create_ops_app
from shopper.api.page_route import PageRoute
from shopper.api.readiness import Check, lag_check
from shopper.config import Config
from shopper.domain.guardrail import GuardrailRule
from shopper.domain.segment import SegmentPolicy
from shopper.feature_wiring import build_feature_pipeline
from shopper.keys import ApiKeys
from shopper.ports.cache import PageCache, RecommendationCache
from shopper.ports.clock import Clock
from shopper.ports.event_log import EventConsumer, EventLog
from shopper.ports.flags import FlagClient
from shopper.ports.model_store import ModelStore
from shopper.ports.processor_state import ProcessorState
from shopper.services.experiments import (
    EXPERIMENT_REPORT_S,
    ReportPublisher,
    experiment_report_of,
)
from shopper.services.feature_pipeline import FeaturePipeline
from shopper.services.guardrail import Guardrail
from shopper.services.history import History
from shopper.services.ingest import EventIngest
from shopper.services.learned_ranking import LearnedFeatures
from shopper.services.metrics import Lag, Metrics, Probes
from shopper.services.page_log import PageLog
from shopper.services.priority import PAGES_SERVED_HERE
from shopper.services.processor import (
    Processor,
    ProcessorRunner,
    ProcessorSettings,
)
from shopper.services.processor_stats import summarize_stats
from shopper.services.ranking import RankingSettings, RankingStage, ranking_stats
from shopper.services.serving import RecommendationReader
from shopper.services.state_rebuild import StateRebuild, replay

# A processor further behind than this (records, over its partitions) is not ready.
READY_MAX_LAG = 100_000


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
    closers: list[Callable[[], None]] = field(default_factory=list)  # connections
    runners: list[ProcessorRunner] = field(default_factory=list)
    features: FeaturePipeline | None = None  # shared by this process's processors
    # Whether processors of other processes share the stream (Kafka, or a shared log).
    replicated: bool = False
    models: ModelStore | None = None  # trained model versions; None: the baseline ranker
    flags: FlagClient | None = None  # experiment routing; None: everyone is the champion
    metrics: Metrics = field(default_factory=Metrics)  # the process's, for GET /metrics
    # GET /readyz's checks of the stream and the cache (the processor's is added by app())
    readiness: dict[str, Check] = field(default_factory=dict)
    _rebuild: StateRebuild | None = None  # watches the processor state (Redis) for a loss
    _report: tuple[float, dict[str, Any]] | None = None
    _publishing: bool = False  # computes the experiment report and publishes it

    def __post_init__(self) -> None:
        probes = Probes(
            self.event_log.delivery_stats, self._lag, self.experiment_report, self._tier_share
        )
        self.metrics.watch(probes)

    @functools.cached_property
    def segments(self) -> SegmentPolicy:
        """The popularity segments counted (any other value: `other`)."""
        return SegmentPolicy.of(self.config.segment_countries, self.config.segment_devices)

    @functools.cached_property
    def keys(self) -> ApiKeys:
        """The API keys this process takes: the configured ones; an admin token or ingest
        key not configured is a random one (`keys.with_keys` fills them in first where a
        client must know them)."""
        return ApiKeys.of(self.config)

    def app(self) -> PageRoute:
        PAGES_SERVED_HERE.set()  # background work here now hands the GIL to page reads
        self.metrics.start()  # samples gauges on a thread with several processes only
        pages = PageLog(window_s=self.config.dashboard_sample_s)
        # The dashboard's history of this API process: sampled on a thread until close().
        sources = {"stats": self.processor_stats, "experiments": self.experiment_report}
        history = History({**sources, "pages": pages.summary}, pages.window_s, now=self.clock.now)
        history.start()
        self.closers.append(history.stop)
        return create_app(
            self.ingest,
            self.reader,
            default_k=self.config.default_k,
            max_k=self.config.max_k,
            health=self._health(),
            stats=self.processor_stats,
            experiments=self.experiment_report,
            history=history,
            pages=pages,
            metrics=self.metrics,
            keys=self.keys,
            max_body_bytes=self.config.max_body_bytes,
            readiness=self._readiness(),
        )

    def ops_app(self) -> FastAPI:
        """Health, counters and metrics only: what a processor-only process serves."""
        self.metrics.start()
        return create_ops_app(self._health(), self.processor_stats, self.metrics, self._readiness())

    def _readiness(self) -> dict[str, Check]:
        """The dependencies' checks, and the processors' lag where processors run here."""
        if not self.runners:
            return self.readiness
        behind = lag_check(self._lag, READY_MAX_LAG)

        def processor() -> str | None:
            if any(runner.failing for runner in self.runners):
                return "micro-batches failing (retried from the committed offsets)"
            return behind()

        return {**self.readiness, "processor": processor}

    def _health(self) -> dict[str, str]:
        return {
            "stream": url_scheme(self.config.stream_url),
            "cache": url_scheme(self.config.cache_url),
        }

    def processor_stats(self) -> dict[str, Any]:
        """The summed counters of this process's processors, of its stream producer
        (`stream`) and of its feature pipeline (`features`, when on)."""
        stats = summarize_stats([r.processor.stats for r in self.runners])
        stats["stream"] = {
            **self.event_log.delivery_stats(),
            "impressions_dropped": self.ingest.impressions_dropped,
        }
        if self.features is not None:
            stats["features"] = dataclasses.asdict(self.features.stats)
        stats["ranking"] = ranking_stats([r.processor.ranking.stats for r in self.runners])
        if page_cache := self.reader.page_cache_status():
            stats["page_cache"] = page_cache
        return stats

    def _lag(self) -> Lag:
        """Records behind per partition, over this process's processors."""
        return {tp: n for runner in self.runners for tp, n in runner.processor.lag.items()}

    def _tier_share(self) -> dict[str, float]:
        stats = ranking_stats([r.processor.ranking.stats for r in self.runners])
        shares: dict[str, float] = stats["tier_share"]
        return shares

    def experiment_report(self, max_age_s: float = EXPERIMENT_REPORT_S) -> dict[str, Any]:
        """The running experiment's per-variant report (GET /v1/experiments), at most
        `max_age_s` old. A process that publishes it (`start_report_publisher`: one that
        runs processors) computes it, its intervals resampling every session, and
        publishes it in the processor state. Any other process (an API replica) serves the
        one published, and computes its own only while there is none: the computation
        would take the page path's CPU (and GIL) for a tenth of a second or more."""
        now = time.monotonic()
        if self._report is not None and now - self._report[0] <= max_age_s:
            return self._report[1]
        if not self._publishing and (published := self.state.published_report()) is not None:
            self._report = (now, published)
            return published
        report = experiment_report_of(self.flags, self.state, FlagFile(self.config.flags_path))
        if self._publishing:
            self.state.publish_report(report)
        self._report = (now, report)
        return report

    def start_report_publisher(self) -> ReportPublisher:
        """Compute and publish the experiment report every `dashboard_sample_s` on a
        thread (stopped on close), for the API replicas that serve it."""
        self._publishing = True
        publisher = ReportPublisher(
            functools.partial(self.experiment_report, 0.0), self.config.dashboard_sample_s
        )
        publisher.start()
        self.closers.append(publisher.stop)
        return publisher

    def start_guardrail(self) -> Guardrail | None:
        """The experiment guardrail on a thread of its own (none if `guardrail_check_s`
        is 0); stopped on close."""
        c = self.config
        if c.guardrail_check_s <= 0:
            return None
        rule = GuardrailRule(c.guardrail_metric, c.guardrail_min_sessions, c.guardrail_alpha)
        report = functools.partial(self.experiment_report, 0.0)
        guardrail = Guardrail(FlagFile(c.flags_path), report, rule, c.guardrail_check_s)
        guardrail.start()
        self.closers.append(guardrail.stop)
        return guardrail

    def processor(self, consumer: EventConsumer | None = None) -> Processor:
        """A new member of the processor consumer group (or a processor reading what
        `consumer` reads)."""
        c = self.config
        if consumer is None:
            topics = [c.events_topic, c.catalog_topic]
            consumer = self.event_log.subscribe(topics, c.processor_group)
        settings = ProcessorSettings(
            dead_letter_topic=c.dead_letter_topic,
            list_size=c.list_size,
            max_events=c.microbatch_max_events,
            wait_s=c.microbatch_wait_s,
            popular_refresh_s=c.popular_refresh_s,
            transaction_events=c.state_transaction_events,
            item_events_topic=(
                c.item_events_topic if self.features is not None and self.replicated else None
            ),
            segments=self.segments,
        )
        ranking = RankingStage(
            self.state,
            self.cache,
            self.clock,
            RankingSettings(
                c.list_size,
                c.reshow_viewed,
                c.model_poll_s,
                c.trending_weight,
                c.price_drop_weight,
                c.learned_ranker,
                c.feature_log_sample,
                c.ranker_feature_wait_s,
                c.shadow_log_sample,
                self.segments,
            ),
            self.models,
            self._learned_features(),
            self.flags,
            JsonlListLog(c.data_dir / "experiments" / "shadow-lists"),
        )
        ranking.refresh_model(force=True)
        return Processor(
            consumer,
            self.event_log,
            self.state,
            self.cache,
            self.clock,
            settings,
            self.features,
            ranking,
            self.metrics,
        )

    def _learned_features(self) -> LearnedFeatures | None:
        """The learned ranker's feature reads: the online store the feature pipeline
        writes (a store of its own for this processor's thread), its served-row log."""
        if self.features is None:
            return None
        pipeline = self.features
        return LearnedFeatures(
            pipeline.open_store,
            pipeline.served_log,
            pipeline.events_seen,
            pipeline.pushed,
            lambda: pipeline.pushes,
        )

    def replay_catalog(self, stop: threading.Event) -> int:
        """Fold the whole catalog topic in again (a consumer group of its own, from the
        start): the processor state lost it (services/state_rebuild.py)."""
        c = self.config
        group = f"{c.processor_group}.rebuild.{uuid.uuid4().hex[:8]}"
        consumer = self.event_log.subscribe([c.catalog_topic], group, from_start=True)
        return replay(self.processor(consumer), stop)

    def _watch_state(self) -> None:
        """Where the processor state can be lost (Redis), rebuild its catalog when it is."""
        if self._rebuild is not None or url_scheme(self.config.cache_url) not in (
            "redis",
            "rediss",
        ):
            return
        from shopper.adapters.redis_state_marker import RedisStateMarker

        marker = RedisStateMarker(self.config.cache_url, self.config.redis_key_prefix)
        self._rebuild = StateRebuild(marker, self.replay_catalog)
        self._rebuild.start()
        self.closers += [self._rebuild.stop, marker.close]

    def start_processor(self, niceness: int = 0) -> ProcessorRunner:
        """Run a processor on a background thread; `niceness` > 0 lowers its OS priority
        (when it shares the process with the API)."""
        runner = ProcessorRunner(self.processor(), niceness)
        self._watch_state()
        runner.start()
        self.runners.append(runner)
        return runner

    def close(self) -> None:
        if self._rebuild is not None:  # before the stream it reads closes
            self._rebuild.stop()
        for runner in self.runners:
            runner.stop()
        self.runners.clear()
        if self.features is not None:
            self.features.close()
        self.event_log.flush()
        self.event_log.close()
        for close in self.closers:
            close()
        self.closers.clear()
        self.metrics.close()


def build_system(
    config: Config,
    clock: Clock | None = None,
    shared_log: EventLog | None = None,
    models: ModelStore | None = None,
    flags: FlagClient | None = None,
) -> System:
    """The process's system. `shared_log`: a stream other systems use too (tests run
    processor replicas in one process with it); by default, the configured one.
    `models`: the model store (by default the folder `config.models_folder`). `flags`:
    the experiment's flag client (by default the configured flag file's)."""
    clock = clock or SystemClock()
    replicated = shared_log is not None or url_scheme(config.stream_url) != "memory"
    event_log = shared_log or event_log_of(config)
    closers: list[Callable[[], None]] = []
    cache, state, pages = cache_and_state(config, clock, closers)
    ingest = EventIngest(
        event_log,
        cache,
        config.events_topic,
        config.catalog_topic,
        config.max_batch,
        clock,
        config.max_event_skew_s,
    )
    flags = flags or flag_client(config)
    closers.append(flags.close)
    segments = SegmentPolicy.of(config.segment_countries, config.segment_devices)
    reader = RecommendationReader(cache, clock, flags, pages, segments)
    features = build_feature_pipeline(config, event_log if replicated else None)
    return System(
        config,
        clock,
        event_log,
        cache,
        state,
        ingest,
        reader,
        features=features,
        closers=closers,
        replicated=replicated,
        models=models if models is not None else model_store_of(config),
        flags=flags,
        readiness=_readiness_checks(event_log, pages),
    )


def _readiness_checks(event_log: EventLog, pages: PageCache | None) -> dict[str, Check]:
    """Each dependency's readiness check, where its adapter has one (the embedded ones,
    in process, are always ready)."""
    checks: dict[str, Check] = {}
    for name, adapter in (("stream", event_log), ("cache", pages)):
        check = getattr(adapter, "readiness", None)
        if callable(check):
            checks[name] = check
    return checks
