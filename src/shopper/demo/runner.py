"""Runs the embedded system (or the configured engines) under demo traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from shopper.services.runtime import free_port

DRAIN_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    dataset: Path | None = None
    shoppers: int = 600
    max_events: int = 60_000
    seed: int = 7
    progress: bool = True


def run_demo(config: Config, options: DemoOptions) -> dict[str, Any]:
    """Start shopper (API and processor in one process), drive traffic at it as a shop
    frontend in this process, and report. The frontend is a separate process, as a real one
    is, so the latency it measures is the page's, not this script's GIL contention."""
    traffic = (
        open_dataset(options.dataset, options.max_events)
        if options.dataset
        else ShopSimulator(SimulationParams(shoppers=options.shoppers, seed=options.seed))
    )
    started = time.perf_counter()
    with ShopperProcess(config) as url:
        shop = ShopClient(url)
        total, unit = _size(traffic)
        with _progress(options.progress, total, unit) as tick:
            traffic.run(shop, tick)
        stats = _drain(shop, shop.stats.events_accepted)
        shop.close()
    elapsed = time.perf_counter() - started
    return _report(config, traffic, shop, stats, elapsed)


class ShopperProcess:
    """`shopper serve --role all` as a child process, configured from `config`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_file = config.data_dir / "demo-server.log"

    def __enter__(self) -> str:
        self._config.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **config_env(self._config)}
        command = [
            sys.executable,
            "-m",
            "shopper",
            "serve",
            "--role",
            "all",
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
    """The config as SHOPPER_* variables, for a child process."""
    return {ENV_PREFIX + name.upper(): str(value) for name, value in config.model_dump().items()}


def _count_redis_lists(config: Config) -> int:
    """Proof that the lists live in Redis: the stored user lists under this prefix."""
    import redis

    client = redis.Redis.from_url(config.cache_url)
    try:
        pattern = f"{config.redis_key_prefix}list:*"
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
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
        done = stats["applied"] + stats["duplicates"] + stats["dead_letters"] >= accepted
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
        "events_processed": stats["applied"],
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
    if config.cache_url.startswith(("redis://", "rediss://")):
        report["lists_in_redis"] = _count_redis_lists(config)
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
