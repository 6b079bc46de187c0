"""shopper's Prometheus metrics: every definition, and what `GET /metrics` serves.

One `Metrics` per process, made by the composition root. The page path and the processor
update library metrics as they go (a histogram observation, counter increments once per
micro-batch); the spool and the processors' lag are sampled into gauges when scraped; the
experiment's per-variant figures and the tier mix are read off the system's own reports
when scraped (`ReportCollector`), so no copy of them goes stale.

Several processes on one machine (uvicorn workers, processors): start each with
`PROMETHEUS_MULTIPROC_DIR` naming one folder, emptied before they start. The Prometheus
client then keeps every value in a file per process (it reads the variable itself, when
it is first imported), `/metrics` adds the files up (`MultiProcessCollector`), gauges say
how (`multiprocess_mode`), and a thread samples each process's gauges every
`SAMPLE_EVERY_S`, since a scrape only runs in the process that answers it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

RECOMMENDATIONS_ROUTE = "/v1/recommendations"
SIMILAR_ROUTE = "/v1/items/{item_id}/similar"
PAGE_ROUTES = (RECOMMENDATIONS_ROUTE, SIMILAR_ROUTE)
# Page reads take tenths of a millisecond in memory, one to a few on Redis: fine buckets
# there, and up to the 100 ms beyond which a page has given up on its recommendations.
PAGE_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075, 0.01, 0.025,
    0.05, 0.1,
)  # fmt: skip
# From a micro-batch's wait (tens of ms) to a processor that is minutes behind.
FRESHNESS_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
SPOOL_STATES = ("waiting", "kept_on_disk", "sent_again", "lost")
SAMPLE_EVERY_S = 5.0  # with several processes: how often each samples its own gauges
Lag = Mapping[tuple[str, int], int]  # (topic, partition) -> records behind


def multiprocess_mode() -> bool:
    """Whether the Prometheus client keeps its values in per-process files (it does when
    `PROMETHEUS_MULTIPROC_DIR` was set as it was imported) for `/metrics` to add up."""
    return values.ValueClass is not values.MutexValue


@dataclass(frozen=True, slots=True)
class Probes:
    """What the process is asked when scraped: its stream producer's delivery counters
    (`EventLog.delivery_stats`), its processors' lag, the experiment report (as
    `GET /v1/experiments`) and the share of lists written per tier."""

    spool: Callable[[], Mapping[str, int]]
    lag: Callable[[], Lag]
    experiment: Callable[[], Mapping[str, Any]]
    tier_share: Callable[[], Mapping[str, float]]


class Metrics:
    """The process's metrics (on a registry of its own, so systems built side by side in
    one process, as tests do, count apart) and their exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess = multiprocess_mode()
        self._define_page_metrics()
        self._define_processor_metrics()
        self._define_gauges()
        self._probes: Probes | None = None
        self._lag_labels: set[tuple[str, str]] = set()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._failing: set[str] = set()
        self._served = self._served_collector()

    def _define_page_metrics(self) -> None:
        page = Histogram(
            "shopper_page_read_seconds",
            "Page reads inside shopper, to the start of the response (as Server-Timing).",
            ["route"],
            buckets=PAGE_BUCKETS_S,
            registry=self.registry,
        )
        # Bound once: the page path does no label look-up for its latency.
        self._page_seconds = {route: page.labels(route) for route in PAGE_ROUTES}
        self._lists_served = Counter(
            "shopper_lists_served",
            "Lists served to pages, by source and by the shopper's assigned variant.",
            ["source", "variant"],
            registry=self.registry,
        )
        self._served_by: dict[tuple[str, str], Any] = {}  # its children, a handful

    def _define_processor_metrics(self) -> None:
        r = self.registry
        self._freshness = Histogram(
            "shopper_list_freshness_seconds",
            "From the log's accept of a shopper's event to their lists written.",
            buckets=FRESHNESS_BUCKETS_S,
            registry=r,
        )
        self._lists_written = Counter(
            "shopper_lists_written", "Shopper lists written, by tier.", ["tier"], registry=r
        )
        self._events_applied = Counter(
            "shopper_events_applied", "Events applied by the processors, by type.", ["type"],
            registry=r,
        )  # fmt: skip
        self._dead_letters = Counter(
            "shopper_dead_letters", "Records that were not events, sent to the dead letters.",
            registry=r,
        )  # fmt: skip
        self._duplicates = Counter(
            "shopper_duplicate_events", "Events seen again (redeliveries) and skipped.",
            registry=r,
        )  # fmt: skip
        self._impressions = Counter(
            "shopper_impressions", "Impressions (lists served) attributed by the processors.",
            registry=r,
        )  # fmt: skip

    def _define_gauges(self) -> None:
        # A partition moves between processes: the value set last is the one that holds.
        self._lag = Gauge(
            "shopper_processor_lag_records",
            "Records of a partition the processors have yet to read (end offset - position).",
            ["topic", "partition"],
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )
        # Each process has a spool of its own: the machine's is their sum.
        self._spool = Gauge(
            "shopper_spool_records",
            "The stream producer's records by state: waiting (in memory, for the broker), "
            "kept_on_disk, sent_again (from disk) and lost (since start).",
            ["state"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    # The page path (the API's PageTimer).

    def page_read(self, route: str, seconds: float, source: str | None, variant: str) -> None:
        """One page read of `route` (one of PAGE_ROUTES) that took `seconds` inside shopper
        and, when it answered 200, served a list from `source` for `variant`."""
        self._page_seconds[route].observe(seconds)
        if source is None:
            return
        # A dict look-up: labels() takes a lock and costs twice the increment.
        key = (source, variant)
        served = self._served_by.get(key)
        if served is None:
            served = self._served_by[key] = self._lists_served.labels(*key)
        served.inc()

    # The processor, once per micro-batch.

    def batch_applied(self, types: Mapping[str, int], duplicates: int, dead_letters: int) -> None:
        """A micro-batch's events applied by type, redeliveries skipped, dead letters."""
        for event_type, count in types.items():
            self._events_applied.labels(event_type).inc(count)
        if duplicates:
            self._duplicates.inc(duplicates)
        if dead_letters:
            self._dead_letters.inc(dead_letters)
        if impressions := types.get("impression", 0):
            self._impressions.inc(impressions)

    def lists_written(self, tiers: Mapping[str, int], freshness_s: Iterable[float]) -> None:
        """A micro-batch's lists written, by tier, and each shopper's list freshness."""
        for tier, count in tiers.items():
            self._lists_written.labels(tier).inc(count)
        for seconds in freshness_s:
            self._freshness.observe(seconds)

    # Scrapes.

    def watch(self, probes: Probes) -> None:
        """Sample `probes` at every scrape (and, with several processes, from `start()`
        on, every SAMPLE_EVERY_S)."""
        self._probes = probes
        collector = ReportCollector(probes.experiment, probes.tier_share)
        if self._multiprocess:
            assert isinstance(self._served, CollectorRegistry)
            self._served.register(collector)
        else:
            self.registry.register(collector)

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of `GET /metrics`."""
        self.sample()
        return generate_latest(self._served), CONTENT_TYPE_LATEST

    def sample(self) -> None:
        """Set the gauges of this process from its probes."""
        if self._probes is None:
            return
        if (spool := self._read("spool", self._probes.spool)) is not None:
            for state in SPOOL_STATES:
                self._spool.labels(state).set(spool.get(state, 0))
        if (lag := self._read("lag", self._probes.lag)) is not None:
            self._set_lag(lag)

    def start(self) -> None:
        """With several processes, sample this one's gauges on a thread until `close()`:
        a scrape answered by another process cannot ask this one."""
        if not self._multiprocess or self._sampler is not None:
            return
        self._sampler = threading.Thread(target=self._sample_loop, name="shopper-metrics")
        self._sampler.daemon = True
        self._sampler.start()

    def close(self) -> None:
        """Stop sampling; with several processes, drop this one's live gauges."""
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(SAMPLE_EVERY_S)
            self._sampler = None
        if self._multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def _sample_loop(self) -> None:
        while not self._sampling.wait(SAMPLE_EVERY_S):
            self.sample()

    def _set_lag(self, lag: Lag) -> None:
        labels = {(topic, str(partition)): behind for (topic, partition), behind in lag.items()}
        # Only partitions this process no longer reads are removed: each new label makes a
        # new value (in multiprocess mode, one more entry in the client's files).
        for gone in self._lag_labels - labels.keys():
            self._lag.remove(*gone)
        for label, behind in labels.items():
            self._lag.labels(*label).set(behind)
        self._lag_labels = set(labels)

    def _read(self, name: str, probe: Callable[[], Any]) -> Any:
        return _guarded(name, probe, self._failing)

    def _served_collector(self) -> Collector:
        if self._multiprocess:
            served = CollectorRegistry()
            multiprocess.MultiProcessCollector(served)  # type: ignore[no-untyped-call]
            return served
        # The default registry too: the client's process and platform metrics.
        return _Collectors((REGISTRY, self.registry))


class ReportCollector:
    """Gauges read off the system's reports when scraped: per experiment variant, sessions,
    conversion rate and revenue per session; the share of lists written per tier."""

    def __init__(
        self,
        experiment: Callable[[], Mapping[str, Any]],
        tier_share: Callable[[], Mapping[str, float]],
    ) -> None:
        self._experiment = experiment
        self._tier_share = tier_share
        self._failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        report = _guarded("experiment", self._experiment, self._failing)
        if report is not None:
            yield from _variant_gauges(report)
        shares = _guarded("tier_share", self._tier_share, self._failing)
        if shares is not None:
            tiers = GaugeMetricFamily(
                "shopper_tier_share_ratio",
                "Share of the lists written by this process's processors, per tier.",
                labels=["tier"],
            )
            for tier, share in sorted(shares.items()):
                tiers.add_metric([tier], share)
            yield tiers


def _variant_gauges(report: Mapping[str, Any]) -> Iterator[Metric]:
    sessions = GaugeMetricFamily(
        "shopper_experiment_sessions", "Sessions attributed to each variant.", labels=["variant"]
    )
    conversion = GaugeMetricFamily(
        "shopper_experiment_conversion_ratio",
        "Share of each variant's sessions that bought.",
        labels=["variant"],
    )
    revenue = GaugeMetricFamily(
        "shopper_experiment_revenue_per_session",
        "Revenue per session of each variant (the catalog's currency).",
        labels=["variant"],
    )
    for entry in report.get("variants", []):
        name = str(entry["name"])
        sessions.add_metric([name], entry["sessions"])
        # A variant without sessions has no rates: no sample rather than a made-up 0.
        if entry.get("conversion_rate"):
            conversion.add_metric([name], entry["conversion_rate"]["value"])
        if entry.get("revenue_per_session"):
            revenue.add_metric([name], entry["revenue_per_session"]["value"])
    yield from (sessions, conversion, revenue)


def _guarded(name: str, probe: Callable[[], Any], failing: set[str]) -> Any:
    """`probe()`, or None when it fails: a scrape answers with what it has, and a failure
    is logged once per outage, not at every scrape."""
    try:
        value = probe()
    except Exception:
        if name not in failing:
            failing.add(name)
            log.exception("metrics: reading %s failed", name)
        return None
    failing.discard(name)
    return value


class _Collectors:
    """Several collectors exposed as one."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()
