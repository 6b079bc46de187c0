"""What the learned re-ranker costs the stream processor: events/s with it on and off.

A model is trained (learned ranker included) on a simulated shop's history, its offline
features backfilled into an in-memory store, then promoted. The live run is another
simulation of the same shop (another seed: the same catalog and shopper ids, new visits),
drained by one embedded processor from a pre-filled stream, in five set-ups with the same
model and events:

- memory_on / memory_off: in-memory feature store, `learned_ranker` true / false;
- floor: no feature store (no feature pipeline at all), the blends' order;
- feast_on / feast_off: Feast's SQLite online store under a fresh temporary data_dir.

Each run first drains a warm-up (the catalog and one shopper's view, untimed), so the
stores are open and the model's similar lists written; the clock then runs from the first
live record to the last one read (`events_per_s`), and on to all feature rows online
(`settled_events_per_s`: with the ranker off the pipeline may still be pushing when the
processor is done). Runs are interleaved (on before off, then off before on, ...); each
on/off ratio is taken within one round, and medians, minima and maxima are reported.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopper.adapters.memory_feature_store import InMemoryFeatureStore
from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.bootstrap import System, build_system
from shopper.config import load_config
from shopper.demo.history import HistoryRecorder, simulated_history
from shopper.demo.simulator import ShopSimulator, SimulationParams
from shopper.domain.model import RankingModel
from shopper.domain.stats import percentile
from shopper.services.feature_backfill import backfill_events
from shopper.services.processor import Processor
from shopper.training.data import from_events
from shopper.training.pipeline import train

DEFINITIONS = Path(__file__).parents[1] / "feature_repo"
SHOPPERS = 600  # per simulation: about 10,000 events, enough moments for the ranker
HISTORY_SEED = 1007
LIVE_SEED = 2007
ROUNDS = 3
WARM_UP_SHOPPER = "bench-warm-up"
SETUPS: dict[str, dict[str, Any]] = {
    "memory_on": {"feature_store": "memory", "learned_ranker": True},
    "memory_off": {"feature_store": "memory", "learned_ranker": False},
    "floor": {"feature_store": "off"},
    "feast_on": {"feature_store": "feast", "learned_ranker": True},
    "feast_off": {"feature_store": "feast", "learned_ranker": False},
}
PAIRS = [("memory_on", "memory_off"), ("feast_on", "feast_off")]


def run(rounds: int = ROUNDS, shoppers: int = SHOPPERS) -> dict[str, Any]:
    started = time.perf_counter()
    models, model, trained_s = promoted_model(shoppers)
    catalog, live = live_events(shoppers)
    # Feast is an extra: without it, the in-memory set-ups and the floor only.
    pairs = [p for p in PAIRS if importlib.util.find_spec("feast") or "feast" not in p[0]]
    runs: dict[str, list[dict[str, float]]] = {name: [] for pair in pairs for name in pair}
    runs["floor"] = []
    for n in range(rounds):
        for pair in pairs:
            for name in pair if n % 2 == 0 else reversed(pair):
                runs[name].append(measure(name, models, catalog, live))
        runs["floor"].append(measure("floor", models, catalog, live))
    out: dict[str, Any] = {
        "events": len(live),
        "model": {
            "version": model.version,
            "train_s": round(trained_s, 1),
            "ranker_candidates": model.ranker.candidates if model.ranker else None,
            "ranker_moments": model.ranker.metadata.get("moments") if model.ranker else None,
        },
        "rounds": rounds,
    }
    out.update({name: summarize(results) for name, results in runs.items()})
    out["ratios"] = ratios(runs, pairs)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def promoted_model(shoppers: int) -> tuple[InMemoryModelStore, RankingModel, float]:
    """Trained on the simulated history with its features backfilled, and promoted."""
    started = time.perf_counter()
    history = simulated_history(SimulationParams(shoppers=shoppers, seed=HISTORY_SEED))
    store = InMemoryFeatureStore()
    backfill_events(history, store)
    model = train(from_events(history), features=store)
    if model.ranker is None:
        raise RuntimeError("no learned ranker was fitted: enlarge the history")
    models = InMemoryModelStore()
    models.save(model)
    models.promote(model.version)
    return models, model, time.perf_counter() - started


def live_events(shoppers: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(catalog upserts, the live visits' events) of the shop after its history, as wire
    events; the upserts are stamped now (the recorder leaves them at 0)."""
    recorder = HistoryRecorder()
    ShopSimulator(SimulationParams(shoppers=shoppers, seed=LIVE_SEED)).run(recorder)
    now = datetime.now(UTC).isoformat()
    catalog = [{**raw, "ts": now} for raw in recorder.raw if raw["type"] == "item_upsert"]
    live = [raw for raw in recorder.raw if raw["type"] != "item_upsert"]
    return catalog, live


def measure(
    name: str,
    models: InMemoryModelStore,
    catalog: list[dict[str, Any]],
    live: list[dict[str, Any]],
) -> dict[str, float]:
    gc.collect()
    with _system(SETUPS[name], models) as system:
        # The ranker's wait for the batch's rows to be online, timed apart from the rest.
        waits = _timed_calls(system.features, "pushed") if system.features else []
        processor = system.processor()
        ranked = _timed_calls(processor.ranking, "rank")
        warm_up = [*catalog, _warm_up_event(catalog[0]["item"]["item_id"])]
        _drain(system, processor, warm_up, len(warm_up))
        stats = processor.ranking.stats
        learned_before, timed_out_before = stats.learned_lists, stats.feature_waits_timed_out
        ranked.clear()
        waits.clear()
        drained, settled = _drain(system, processor, live, len(warm_up) + len(live))
        learned = stats.learned_lists - learned_before
        processor.close()
    _check(name, learned)
    per_batch = sorted(ranked)
    return {
        "events_per_s": len(live) / drained,
        "settled_events_per_s": len(live) / settled,
        "learned_lists": learned,
        "feature_waits_timed_out": stats.feature_waits_timed_out - timed_out_before,
        "feature_read_failures": stats.feature_read_failures,
        "batches": len(per_batch),
        "rank_ms_per_batch_p50": percentile(per_batch, 50),
        "rank_ms_per_batch_p99": percentile(per_batch, 99),
        "rank_s_total": sum(per_batch) / 1000,
        "feature_wait_ms_per_batch_p50": percentile(waits, 50),
        "feature_wait_s_total": sum(waits) / 1000,
        "drain_s": drained,
    }


@contextmanager
def _system(setup: dict[str, Any], models: InMemoryModelStore) -> Iterator[System]:
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            {},
            data_dir=Path(tmp),
            feature_repo=DEFINITIONS,
            microbatch_wait_s=0.0,
            feature_log_sample=0.05,
            **setup,
        )
        if config.feature_store == "feast":
            from shopper.feature_tasks import apply_definitions

            apply_definitions(config)
        system = build_system(config, models=models)
        try:
            yield system
        finally:
            system.close()


def _timed_calls(owner: Any, method: str) -> list[float]:
    """Milliseconds of each call of `owner`'s `method` from now on, recorded by wrapping
    it on the instance (the processor calls the ranking stage's `rank` once per
    micro-batch with shoppers to rank, and the ranker the pipeline's `pushed`)."""
    call = getattr(owner, method)
    times: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            times.append((time.perf_counter() - started) * 1000)

    setattr(owner, method, timed)
    return times


def _drain(
    system: System, processor: Processor, events: list[dict[str, Any]], total: int
) -> tuple[float, float]:
    """Ingest `events`, then run the processor until it has read `total` records; returns
    (seconds to the last record read, seconds until the feature rows are online too),
    both from the first record read."""
    for start in range(0, len(events), 500):
        system.ingest.ingest(events[start : start + 500])
    deadline = time.monotonic() + 300
    started = None
    while processor.stats.records < total and time.monotonic() < deadline:
        if processor.run_once() and started is None:
            started = time.perf_counter()
    drained = time.perf_counter()
    if processor.stats.records < total:
        raise RuntimeError(f"processor read {processor.stats.records} of {total} records")
    if system.features is not None and not system.features.flush(120):
        raise RuntimeError("feature pipeline did not catch up in 120 s")
    first = started or drained
    return drained - first, time.perf_counter() - first


def _warm_up_event(item_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{WARM_UP_SHOPPER}-{time.time_ns()}",
        "type": "view",
        "ts": datetime.now(UTC).isoformat(),
        "session_id": WARM_UP_SHOPPER,
        "item_id": item_id,
    }


def _check(name: str, learned: int) -> None:
    on = SETUPS[name].get("learned_ranker", False) and SETUPS[name]["feature_store"] != "off"
    if on and learned == 0:
        raise RuntimeError(f"{name}: the learned ranker ordered no list")
    if not on and learned != 0:
        raise RuntimeError(f"{name}: the learned ranker ordered {learned} lists")


def summarize(results: list[dict[str, float]]) -> dict[str, Any]:
    """Median of each measure over the runs; min and max of the rates."""
    out: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results]
        out[key] = round(statistics.median(values), 3)
        if key.endswith("per_s"):
            out[f"{key}_min"] = round(min(values), 1)
            out[f"{key}_max"] = round(max(values), 1)
    return out


def ratios(runs: dict[str, list[dict[str, float]]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Each on/off and on/floor ratio within one round, then the median over rounds."""
    wanted = [(f"{on}_vs_{off}", on, off) for on, off in pairs]
    wanted += [(f"{name}_vs_floor", name, "floor") for pair in pairs for name in pair]
    out: dict[str, Any] = {}
    for label, a, b in wanted:
        for key in ("events_per_s", "settled_events_per_s"):
            values = _paired(runs[a], runs[b], key)
            out[f"{label}.{key}"] = {
                "median": round(statistics.median(values), 3),
                "min": round(min(values), 3),
                "max": round(max(values), 3),
            }
    return out


def _paired(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> list[float]:
    return [x[key] / y[key] for x, y in zip(a, b, strict=True)]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
