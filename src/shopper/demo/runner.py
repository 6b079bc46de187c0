"""Runs the embedded system (or the configured engines) under demo traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shopper.config import ENV_PREFIX, Config
from shopper.demo.client import ShopClient
from shopper.demo.datasets import open_dataset
from shopper.demo.simulator import ShopSimulator, SimulationParams
from shopper.domain.stats import percentile
from shopper.errors import ShopperError
from shopper.keys import dump_with_secrets, with_keys
from shopper.services.runtime import free_port

DRAIN_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 90.0  # with the feature store on, it opens Feast first
FIRST_EVENT_TIMEOUT_S = 30.0  # from a live server to the warm-up event applied
HISTORY_SEED = 1_000  # the simulated past is drawn with seed + this


@dataclass(frozen=True, slots=True)
class DemoOptions:
    dataset: Path | None = None
    shoppers: int = 600
    max_events: int = 60_000
    seed: int = 7
    progress: bool = True
    experiment: bool = False  # a 2% challenger (the baseline ranker) converting less


def run_demo(config: Config, options: DemoOptions) -> dict[str, Any]:
    """Start shopper, drive traffic at it as a shop frontend from this process, and report.

    The frontend is a separate process, as a real one is, so the latency it measures is the
    page's, not this script's. Embedded, shopper is one process (API and processor); on
    Kafka, an API process and a processor process, as in production. On real engines the
    run gets topic and key prefixes of its own, and its Redis keys are removed afterwards.
    """
    conversion = (("challenger", CHALLENGER_CONVERSION),) if options.experiment else ()
    params = SimulationParams(
        shoppers=options.shoppers,
        seed=options.seed,
        conversion_by_variant=conversion,
        # Event ids of this run's own: a rerun in the same data folder continues the
        # archived history (whose ids it would otherwise repeat at other times).
        run=uuid.uuid4().hex[:8],
    )
    traffic = (
        open_dataset(options.dataset, options.max_events)
        if options.dataset
        else ShopSimulator(params)
    )
    config = with_keys(_own_namespace(config))
    if options.experiment:
        _start_experiment(config)
    started = time.perf_counter()
    model = None if options.dataset else _train_on_history(config, options)
    try:
        with _shopper(config) as (api_url, ops_url):
            shop, ops = ShopClient(api_url, *_keys(config)), ShopClient(ops_url, *_keys(config))
            _wait_until_live(shop, ops)
            total, unit = _size(traffic)
            with _progress(options.progress, total, unit) as tick:
                traffic.run(shop, tick)
            stats = _drain(ops, shop.stats.events_accepted)
            experiments = _experiments(shop, ops) if options.experiment else {}
            shop.close()
            ops.close()
        elapsed = time.perf_counter() - started
        report = _report(config, traffic, shop, stats, elapsed)
        if options.experiment:
            report["experiment"] = experiment_summary(experiments)
        if model is not None:
            report["model"] = model
        if _on_redis(config):
            report["lists_in_redis"] = _count_redis_lists(config)
        return report
    finally:
        if _on_redis(config):
            _delete_run_keys(config)  # also when the run failed half-way


CHALLENGER_SHARE = 2  # percent of shoppers routed to the challenger
CHALLENGER_CONVERSION = 0.5  # its simulated shoppers cart and buy half as often


def _start_experiment(config: Config) -> None:
    """The champion (the promoted model) on 98% of shoppers, the challenger (the
    baseline co-occurrence ranker) on 2%, in the run's flag file."""
    from shopper.adapters.flagd_format import write_flag_file
    from shopper.domain.experiment import BASELINE, PROMOTED, Experiment, Variant

    champion = Variant("champion", PROMOTED, 100 - CHALLENGER_SHARE)
    write_flag_file(
        config.flags_path,
        Experiment((champion, Variant("challenger", BASELINE, CHALLENGER_SHARE))),
    )


def _experiments(shop: ShopClient, ops: ShopClient) -> dict[str, Any]:
    """The per-variant report, once the processor has attributed every event, the
    impressions the API published for the pages it served included."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    served = shop.stats.requests - shop.stats.errors
    while ops.processor_stats().get("impressions", 0) < served:
        if time.monotonic() > deadline:
            break  # report what was attributed
        time.sleep(0.05)
    return shop.get_json("/v1/experiments?max_age_s=0")


def experiment_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Per variant: model, share, sessions, conversion and revenue per session with
    their intervals, and the challenger's difference to the champion."""
    out = {}
    for v in report.get("variants", []):
        versus = v.get("vs_champion") or {}
        out[v["name"]] = {
            "model": v.get("model"),
            "weight": v.get("weight"),
            "sessions": v.get("sessions"),
            "conversion_rate": v.get("conversion_rate"),
            "revenue_per_session": v.get("revenue_per_session"),
            "vs_champion": {
                metric: versus[metric]
                for metric in ("conversion_rate", "revenue_per_session")
                if metric in versus
            }
            or None,
        }
    return out


def _train_on_history(config: Config, options: DemoOptions) -> dict[str, Any]:
    """Train and promote a model on the simulated shop's past, as a shop would on its
    archive, so the live run is served by trained models (tiers and all)."""
    from shopper.demo.history import simulated_history
    from shopper.model_tasks import run_train
    from shopper.ranker_tasks import FeatureSource
    from shopper.training.data import from_events

    history = simulated_history(
        SimulationParams(shoppers=options.shoppers, seed=options.seed + HISTORY_SEED)
    )
    # With the feature store on, the learned ranker too, on the history's features.
    ranker = FeatureSource(given=tuple(history)) if config.feature_store != "off" else None
    result = run_train(
        config, from_events(history), promote=True, show=options.progress, ranker=ranker
    )
    keys = ("version", "seconds", "events", "shoppers", "items", "ranker")
    return {k: result[k] for k in keys}


def _keys(config: Config) -> tuple[str, str]:
    """The simulated shop's admin token (its catalog and stock) and ingest key (its
    shoppers' events)."""
    assert config.admin_token is not None and config.ingest_key is not None
    return config.admin_token.get_secret_value(), config.ingest_key.get_secret_value()


def _own_namespace(config: Config) -> Config:
    if config.stream_url.startswith("memory") and not _on_redis(config):
        return config
    run = f"demo-{uuid.uuid4().hex[:8]}"
    update = {
        "topic_prefix": f"{config.topic_prefix}{run}.",
        "redis_key_prefix": f"{config.redis_key_prefix}{run}:",
    }
    if _feast_on_redis(config):
        # Feast's Redis keys end with the project's name, not shopper's prefix.
        update["feature_project"] = f"{config.feature_project}_{run.replace('-', '_')}"
    return config.model_copy(update=update)


def _feast_on_redis(config: Config) -> bool:
    return config.feature_store == "feast" and _on_redis(config)


def _on_redis(config: Config) -> bool:
    return config.cache_url.startswith(("redis://", "rediss://"))


@contextmanager
def _shopper(config: Config) -> Iterator[tuple[str, str]]:
    """The shopper processes: (API URL, URL of the process that runs the processor)."""
    if config.stream_url.startswith("memory"):
        with ShopperProcess(config, "all") as url:
            yield url, url
        return
    with ShopperProcess(config, "processor") as ops_url, ShopperProcess(config, "api") as url:
        yield url, ops_url


def _wait_until_live(shop: ShopClient, ops: ShopClient) -> None:
    """One warm-up event through the whole pipeline (a new consumer first joins its group),
    so the report measures the running system, not its start."""
    shop.post(
        [
            {
                "event_id": f"warm-up-{uuid.uuid4().hex}",
                "type": "search",
                "ts": datetime.now(UTC).isoformat(),
                "session_id": "demo-warm-up",
                "query": "warm-up",
            }
        ]
    )
    deadline = time.monotonic() + FIRST_EVENT_TIMEOUT_S
    while ops.processor_stats()["applied"] < 1:
        if time.monotonic() > deadline:
            raise ShopperError(
                f"the processor took in no event within {FIRST_EVENT_TIMEOUT_S:.0f} s: is the "
                "stream reachable? The processes' logs are demo-*.log in the data folder"
            )
        time.sleep(0.05)


class ShopperProcess:
    """`shopper serve --role ROLE` as a child process, configured from `config`."""

    def __init__(self, config: Config, role: str) -> None:
        self._config = config
        self._role = role
        self._port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_file = config.data_dir / f"demo-{role}.log"

    def __enter__(self) -> str:
        self._config.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **config_env(self._config)}
        command = [
            sys.executable,
            "-m",
            "shopper",
            "serve",
            "--role",
            self._role,
            "--host",
            "127.0.0.1",
            "--port",
            str(self._port),
        ]
        with self.log_file.open("wb") as log:
            self._proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        tail = self.log_file.read_text(errors="replace")[-2000:]
        raise ShopperError(f"shopper server did not start; its log ({self.log_file}):\n{tail}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def config_env(config: Config) -> dict[str, str]:
    """The config as SHOPPER_* variables, for a child process (the keys in clear)."""
    return {
        # A list as comma-separated text, as the settings read it from the environment.
        ENV_PREFIX + name.upper(): ",".join(value) if isinstance(value, list) else str(value)
        for name, value in dump_with_secrets(config).items()
        if value is not None  # unset: the child's default, as here
    }


def _count_redis_lists(config: Config) -> int:
    """Proof that the lists live in Redis: the stored user lists under this run's prefix."""
    import redis

    client = redis.Redis.from_url(config.cache_url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{config.redis_key_prefix}list:*"))
    finally:
        client.close()


def _delete_run_keys(config: Config) -> None:
    import redis

    client = redis.Redis.from_url(config.cache_url)
    try:
        keys = list(client.scan_iter(match=f"{config.redis_key_prefix}*", count=1000))
        if _feast_on_redis(config):
            keys += client.scan_iter(match=f"*{config.feature_project}", count=1000)
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
    finally:
        client.close()


def _size(traffic: Any) -> tuple[int, str]:
    if isinstance(traffic, ShopSimulator):
        return traffic.p.shoppers, "shoppers"
    return int(traffic.total), "events"


@contextmanager
def _progress(show: bool, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda _: None
        return
    columns = (
        TextColumn("replaying traffic"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("traffic", total=total)
        yield lambda n: progress.advance(task, n)


def _drain(shop: ShopClient, accepted: int) -> dict[str, Any]:
    """Wait until the processor has taken in every accepted event; its final counters."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        stats = shop.processor_stats()
        # Impressions (the API's, one per page served) are applied too; `accepted` are
        # the shop's own events.
        shops = stats["applied"] - stats.get("impressions", 0)
        done = shops + stats["duplicates"] + stats["dead_letters"] >= accepted
        if done or time.monotonic() > deadline:
            return {**stats, "caught_up": done}
        time.sleep(0.05)


def _report(
    config: Config, traffic: Any, shop: ShopClient, stats: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    s = shop.stats
    served = max(sum(s.sources.values()), 1)
    personalized = s.sources.get("personalized", 0) / served
    report: dict[str, Any] = {
        "traffic": getattr(traffic, "name", "simulator"),
        "stream_url": config.stream_url,
        "cache_url": config.cache_url,
        "duration_s": round(elapsed, 2),
        "events_ingested": s.events_accepted,
        "events_rejected": s.events_rejected,
        # Taken in: applied here, or found applied already (a catalog replay of a processor
        # whose state was new may fold catalog events in before the processor reaches them).
        "events_processed": stats["applied"] - stats.get("impressions", 0) + stats["duplicates"],
        "impressions_processed": stats.get("impressions", 0),
        "processor_caught_up": stats["caught_up"],
        "dead_letters": stats["dead_letters"],
        "lists_written": stats["lists_written"],
        "recommendation_requests": s.requests,
        "http_errors": s.errors,
        "serve_p50_ms": round(percentile(s.serve_ms, 50), 3),
        "serve_p99_ms": round(percentile(s.serve_ms, 99), 3),
        "server_p50_ms": round(percentile(s.server_ms, 50), 3),
        "server_p99_ms": round(percentile(s.server_ms, 99), 3),
        "freshness_p50_ms": stats["freshness_p50_ms"],
        "freshness_p99_ms": stats["freshness_p99_ms"],
        "sold_out_items_served": s.sold_out_items_served,
        "items_served": s.items_served,
        "personalized_share": round(personalized, 4),
        "fallback_share": round(1 - personalized, 4),
        "source_counts": dict(s.sources),
    }
    if "features" in stats:
        report["features"] = stats["features"]  # the feature pipeline's counters
    ranking = stats.get("ranking", {})
    report["tier_share"] = ranking.get("tier_share", {})
    report["lists_by_model"] = ranking.get("lists_by_model", {})
    report["trending_items"] = ranking.get("trending_items", 0)
    if "learned" in ranking:
        report["learned_ranker"] = ranking["learned"]
    if isinstance(traffic, ShopSimulator):
        summary = traffic.summary
        report["flash_sale"] = {
            "items": len(summary.flash_items),
            "sold_out": len(summary.sold_out_during_sale),
            "viral_item": summary.viral_item,
            "page_views": summary.page_views,
            "clicks_on_recommendations": summary.recommended_clicks,
        }
    else:
        report["items_withdrawn_after_last_purchase"] = len(traffic.withdrawn)
    return report
