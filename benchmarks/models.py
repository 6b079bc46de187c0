"""Model training and serving cost: `python -m benchmarks.models [--scale-only]`.

- UCI Online Retail (when the shared data folder is there): `shopper train` with its tuning
  step, then a retrain with the tuned settings, both timed end to end as a user runs them.
- Scale: a synthetic shop of 100,000 shoppers and 10,000 items (30 interactions each, items
  drawn from taste clusters with a long tail), fitted with the default settings; the
  artifact's size on disk, and in a fresh process the memory the loaded model takes and the
  time the processor's ranking code needs per shopper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UCI = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci-online-retail"
SHOPPERS = 100_000
ITEMS = 10_000
PER_SHOPPER = 30
CLUSTERS = 100


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    if UCI.is_dir():
        out["uci_training"] = uci_training()
    out["scale"] = scale()
    return out


def uci_training() -> dict[str, Any]:
    """Wall time of `shopper train --dataset` (tuning) and `shopper train --retrain`."""
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "shopper", "train", "--json", "--data-dir", tmp]
        started = time.perf_counter()
        first = json.loads(_run([*base, "--dataset", str(UCI)]))
        tuned_s = time.perf_counter() - started
        started = time.perf_counter()
        _run([*base, "--dataset", str(UCI), "--retrain"])
        retrain_s = time.perf_counter() - started
    return {
        "train_with_tuning_s": round(tuned_s, 1),
        "retrain_s": round(retrain_s, 1),
        "events": first["events"],
        "items": first["items"],
        "note": "wall time of the command, Python start-up and data loading included",
    }


def synthetic(seed: int = 0) -> Any:
    """Shoppers each keep to one taste cluster (90%) with a popular long tail (10%)."""
    from shopper.training.data import CATALOG_COLUMNS, EVENT_COLUMNS, Interactions

    rng = np.random.default_rng(seed)
    n = SHOPPERS * PER_SHOPPER
    cluster = np.repeat(rng.integers(0, CLUSTERS, SHOPPERS), PER_SHOPPER)
    per_cluster = ITEMS // CLUSTERS
    within = np.minimum(rng.zipf(1.5, n) - 1, per_cluster - 1)
    tail = np.minimum(rng.zipf(1.3, n) - 1, ITEMS - 1)
    item = np.where(rng.random(n) < 0.9, cluster * per_cluster + within, tail)
    kinds = rng.choice(["view", "add_to_cart", "purchase"], n, p=[0.8, 0.15, 0.05])
    weight = np.select([kinds == "view", kinds == "add_to_cart"], [1.0, 3.0], 5.0)
    events = pd.DataFrame(
        {
            "subject": np.char.add("u:", np.repeat(np.arange(SHOPPERS), PER_SHOPPER).astype(str)),
            "item_id": np.char.add("sku-", item.astype(str)),
            "ts": 1.7e9 + rng.uniform(0, 60 * 86_400, n),
            "type": kinds,
            "weight": weight,
            "purchase": kinds == "purchase",
            "country": rng.choice(["gb", "de", "fr", "us"], n),
            "device": rng.choice(["mobile", "desktop"], n),
            "referrer": None,
        },
        columns=EVENT_COLUMNS,
    )
    catalog = pd.DataFrame(
        {
            "item_id": [f"sku-{i}" for i in range(ITEMS)],
            "text": [
                f"cat_c{i // per_cluster} brand_b{i % 37} word{i % 997}" for i in range(ITEMS)
            ],
            "listed_at": 1.7e9 - 86_400.0,
        },
        columns=CATALOG_COLUMNS,
    )
    return Interactions(events, catalog)


def scale() -> dict[str, Any]:
    from shopper.adapters.folder_model_store import FolderModelStore
    from shopper.training.fit import fit

    data = synthetic()
    started = time.perf_counter()
    model = fit(data, version="scale")
    fit_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        FolderModelStore(Path(tmp)).save(model)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        served = json.loads(_run([sys.executable, "-m", "benchmarks.models", "--load", tmp]))
    return {
        "shoppers": SHOPPERS,
        "items": ITEMS,
        "events": len(data.events),
        "fit_s": round(fit_s, 1),
        "artifact_mb": round(size / 2**20, 1),
        **served,
    }


def load_and_rank(folder: str) -> dict[str, Any]:
    """In a fresh process: memory of the loaded model, ranking time per shopper."""
    from shopper.adapters.folder_model_store import FolderModelStore
    from shopper.domain.recommender import LiveInteraction, build_profile, recommend

    before = _rss_mb()
    started = time.perf_counter()
    model = FolderModelStore(Path(folder)).load("scale")
    load_s = time.perf_counter() - started
    loaded = _rss_mb()
    rng = np.random.default_rng(1)
    now = model.trained_until
    times = []
    for user in rng.integers(0, SHOPPERS, 500):
        live = [LiveInteraction(f"sku-{i}", 1.0, now) for i in rng.integers(0, ITEMS, 3)]
        t = time.perf_counter()
        profile = build_profile(model, f"u:{user}", now, live=live, live_count=3)
        recommend(model, profile, 100, now)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "load_s": round(load_s, 2),
        "model_memory_mb": round(loaded - before, 1),
        "rank_ms_p50": round(float(np.percentile(times, 50)), 2),
        "rank_ms_p99": round(float(np.percentile(times, 99)), 2),
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(command: list[str]) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return done.stdout


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--load":
        print(json.dumps(load_and_rank(sys.argv[2])))
    elif sys.argv[1:] == ["--scale-only"]:
        print(json.dumps({"scale": scale()}, indent=2))
    else:
        print(json.dumps(run(), indent=2))
