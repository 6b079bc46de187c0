"""Do exported lists match what `shopper evaluate` measures? `python -m benchmarks.export_check
[--data PATH]` (default: the shared UCI Online Retail folder).

The path a shop takes: its own export as canonical files (docs/formats.md), `shopper train`,
`shopper export`. The UCI data is split in time as `evaluate` splits it (the last 30 days
are the test); the training part is written as an events and a catalog JSON lines file;
the two commands run as a user runs them; and recall@20 of the exported lists over the test
window (shoppers with history, relevant = bought in the window and not before) is compared
with `shopper evaluate --dataset PATH`'s recall of `shopper` over the tiers 1-9 and 10+.

Where they may differ: `export` ranks at wall time (`evaluate` at the end of training),
from each shopper's latest trained context (`evaluate`: their first in the test window), and
canonical files here carry no listing time (the data set reader's first-sale dates stand in
for one). `served_recall_same_model`, the exported model measured as `evaluate` measures,
tells the export's own effects apart from any difference between the two ways of reading
the data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

UCI = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci-online-retail"
K = 20
TEST_DAYS = 30.0
HISTORY_TIERS = ("1-9", "10+")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=UCI, help="uci-online-retail folder")
    args = parser.parse_args(argv)
    if not (args.data / "by-day").is_dir():
        sys.exit(f"no UCI Online Retail data at {args.data} (by-day/*.csv.gz): pass --data PATH")
    print(json.dumps(run(args.data), indent=2))


def run(data_path: Path) -> dict[str, Any]:
    from shopper.domain.model import Repurchase
    from shopper.training.data import from_dataset
    from shopper.training.evaluation import targets, time_split

    data = from_dataset(data_path)
    train, window, _ = time_split(data, TEST_DAYS)
    trained = set(train.events.subject.unique())
    tests = [t for t in targets(train, window, Repurchase.EXCLUDE) if t.subject in trained]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        events, catalog = folder / "events.jsonl", folder / "items.jsonl"
        write_events(train.events, events)
        write_catalog(uci_items(data_path), train.catalog.item_id, catalog)
        files = ["--events", str(events), "--catalog", str(catalog)]
        trained_json, train_s = shopper("train", *files, "--json", "--data-dir", tmp)
        lists_file = folder / "lists.csv"
        exported, export_s = shopper(
            "export", "--k", str(K), "--out", str(lists_file), "--data-dir", tmp
        )
        lists = read_lists(lists_file)
        same_model = served_recall(folder / "models", json.loads(trained_json)["version"], tests)
    report, evaluate_s = shopper("evaluate", "--dataset", str(data_path), "--json")
    measured = json.loads(report)["models"]["shopper"]["tiers"]
    export_recall = mean_recall(lists, tests)
    evaluate_recall = pooled_recall(measured, HISTORY_TIERS)
    return {
        "k": K,
        "test_days": TEST_DAYS,
        "test_shoppers_with_history": len(tests),
        "export_recall": round(export_recall, 4),
        "evaluate_recall": round(evaluate_recall, 4),
        "difference": round(export_recall - evaluate_recall, 4),
        "served_recall_same_model": same_model,
        "evaluate_tiers": {t: measured[t] for t in HISTORY_TIERS},
        "export_users": json.loads(exported)["users"],
        "exported_users_with_a_list": len(lists),
        "train_events_written": len(train.events),
        "seconds": {
            "train": round(train_s, 1),
            "export": round(export_s, 1),
            "evaluate": round(evaluate_s, 1),
        },
    }


# --- the canonical files ---------------------------------------------------------------


def write_events(events: pd.DataFrame, path: Path) -> None:
    """Each purchase as a canonical event (a signed-in shopper, the country as context)."""
    with path.open("w", encoding="utf-8") as fh:
        for n, row in enumerate(events.itertuples(index=False)):
            record: dict[str, Any] = {
                "event_id": f"e-{n}",
                "type": "purchase",
                "ts": datetime.fromtimestamp(row.ts, UTC).isoformat(),
                "user_id": str(row.subject).removeprefix("u:"),
                "item_id": row.item_id,
            }
            if isinstance(row.country, str) and row.country:
                record["context"] = {"country": row.country}
            fh.write(json.dumps(record) + "\n")


def uci_items(data_path: Path) -> pd.DataFrame:
    """Title (the first Description) and median price per StockCode, from the raw day files
    with the rows the data set reader keeps (`shopper.training.data.uci`)."""
    from shopper.training.data import uci_rows

    rows = uci_rows(sorted((data_path / "by-day").glob("*.csv.gz")))
    return rows.groupby("StockCode").agg(
        title=("Description", "first"), price=("UnitPrice", "median")
    )


def write_catalog(items: pd.DataFrame, item_ids: Iterable[str], path: Path) -> None:
    """The whole catalog the data set reader knows (as `evaluate` trains with it)."""
    with path.open("w", encoding="utf-8") as fh:
        for item_id in item_ids:
            record: dict[str, Any] = {"item_id": item_id}
            if item_id in items.index:
                title, price = items.loc[item_id, ["title", "price"]]
                if isinstance(title, str):
                    record["title"] = title
                record["price"] = float(price)
            fh.write(json.dumps(record) + "\n")


# --- running the commands, measuring the lists -----------------------------------------


def shopper(*args: str) -> tuple[str, float]:
    """One `python -m shopper` command as a user runs it: its stdout and wall time."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "shopper", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"shopper {args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout, time.perf_counter() - started


def read_lists(path: Path) -> dict[str, list[str]]:
    """Exported lists by subject (`u:<user_id>`), in rank order."""
    lists: dict[str, list[tuple[int, str]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            lists.setdefault(f"u:{row['user_id']}", []).append((int(row["rank"]), row["item_id"]))
    return {s: [item for _, item in sorted(rows)] for s, rows in lists.items()}


def mean_recall(lists: dict[str, list[str]], tests: Sequence[Any]) -> float:
    """Recall@K per test shopper (0 without a list), averaged."""
    total = 0.0
    for t in tests:
        shown = lists.get(t.subject, [])[:K]
        total += sum(1 for item in shown if item in t.relevant) / len(t.relevant)
    return total / max(len(tests), 1)


def pooled_recall(tiers: dict[str, dict[str, float]], names: Sequence[str]) -> float:
    """The tiers' mean recalls pooled over their shoppers."""
    users = sum(tiers[n]["users"] for n in names)
    return sum(tiers[n]["recall"] * tiers[n]["users"] for n in names) / max(users, 1)


def served_recall(models: Path, version: str, tests: Sequence[Any]) -> dict[str, Any]:
    """The exported model measured as `evaluate` measures (at the end of training, test
    window context): what is left of the gap is the export's wall clock and context."""
    from threadpoolctl import threadpool_limits

    from shopper.adapters.folder_model_store import FolderModelStore
    from shopper.training.evaluation import measure, served

    model = FolderModelStore(models).load(version)
    with threadpool_limits(1):
        result = measure(model, tests, K, served())
    return {
        "recall": round(pooled_recall(result, HISTORY_TIERS), 4),
        "tiers": {t: result[t] for t in HISTORY_TIERS},
    }


if __name__ == "__main__":
    main()
