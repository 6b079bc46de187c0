"""The feature engine's start-up rebuild from the event archive: how long for 1 M events.

A shop's month on a Parquet archive (default 1,000,000 events: views, clicks, carts and
purchases of 50,000 shoppers on 10,000 items over 30 days, with catalog records), then
`rebuild_engine` over it, as a processor does before it takes a live event. Reports the
seconds (wall and CPU, and events per second), the rise of the process's peak memory during the
rebuild, and the events the engine keeps (those inside the horizons) against those it
folded into carries. Run: `python -m benchmarks.feature_rebuild [--events N] [--runs R]`.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from shopper.adapters.parquet_event_archive import ParquetEventArchive
from shopper.domain.event import Event, EventContext, EventType
from shopper.domain.features.engine import FeatureEngine
from shopper.domain.item import Item
from shopper.services.feature_rebuild import rebuild_engine

SHOPPERS = 50_000
ITEMS = 10_000
DAYS = 30
T0 = 1_700_000_000.0
KINDS = [EventType.VIEW] * 14 + [EventType.CLICK] * 3 + [EventType.ADD_TO_CART] * 2
KINDS += [EventType.PURCHASE, EventType.DWELL]


def fill(archive: ParquetEventArchive, events: int, seed: int = 1) -> None:
    """The catalog at the start, then `events` shopper events in time order."""
    rng = random.Random(seed)
    catalog = [
        Event(
            f"c-{i}",
            EventType.ITEM_UPSERT,
            T0 - 60,
            item=Item(f"sku-{i}", category=(f"cat-{i % 40}",), price=10.0 + i % 90),
        )
        for i in range(ITEMS)
    ]
    archive.append(catalog)
    span = DAYS * 86_400.0
    for n in range(events - ITEMS):
        shopper = int(rng.paretovariate(1.1)) % SHOPPERS
        kind = rng.choice(KINDS)
        archive.append(
            [
                Event(
                    f"e-{n}",
                    kind,
                    T0 + span * n / events,
                    session_id=f"s-{shopper}-{n // 40_000}",
                    user_id=f"user-{shopper}" if shopper % 3 else None,
                    item_id=f"sku-{int(rng.paretovariate(1.05)) % ITEMS}",
                    price=25.0 if kind in (EventType.ADD_TO_CART, EventType.PURCHASE) else None,
                    quantity=1 if kind in (EventType.ADD_TO_CART, EventType.PURCHASE) else None,
                    dwell_ms=5_000 if kind is EventType.DWELL else None,
                    context=EventContext(device="mobile", country="gb"),
                )
            ]
        )
    archive.flush()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(events: int = 1_000_000, runs: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = ParquetEventArchive(Path(tmp) / "archive", flush_events=100_000)
        started = time.perf_counter()
        fill(archive, events)
        filled_s = time.perf_counter() - started
        seconds, cpu, kept = [], [], 0
        before = peak_mb()
        for _ in range(runs):
            engine = FeatureEngine()
            cpu_started = time.process_time()
            result = rebuild_engine(engine, archive)
            cpu.append(time.process_time() - cpu_started)
            assert result.complete and result.events == events
            seconds.append(result.seconds)
            kept = engine.events_held()
        return {
            "events": events,
            "days": DAYS,
            "archive_mb": round(folder_mb(Path(tmp) / "archive"), 1),
            "archive_write_s": round(filled_s, 1),
            "rebuild_s": [round(s, 2) for s in seconds],
            "rebuild_s_median": round(statistics.median(seconds), 2),
            # CPU seconds too: on a shared machine the wall clock includes waiting.
            "rebuild_cpu_s": [round(s, 2) for s in cpu],
            "events_per_s": round(events / statistics.median(seconds)),
            "peak_rss_rise_mb": round(peak_mb() - before, 1),
            "events_kept_after": kept,
        }


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.runs), indent=2))
