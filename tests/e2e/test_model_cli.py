"""`shopper train`, `models list|promote`, `export` and `evaluate` end to end, in process,
on a small shop written as canonical files (docs/formats.md): two taste clusters of
shoppers viewing, carting and buying over 40 days, a catalog and a users file. The
learned ranker's scratch feature store is Feast (the default) unless a test's config
says memory."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shopper.adapters.folder_model_store import FolderModelStore
from shopper.cli import app
from shopper.domain.learned import (
    FEATURE_NAMES,
    LEARNED,
    StoreRows,
    candidate_matrix,
    candidates_of,
    order_by_ranker,
)
from shopper.domain.recommender import build_profile

START = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 40
SHOPPERS = 60
PER_CLUSTER = 40
CLUSTERS = (
    ("kitchen", "home > kitchen", ("Cookwell", "Panmaster"),
     ("chef knife", "frying pan", "cutting board", "saucepan", "whisk", "colander")),
    ("garden", "outdoor > garden", ("Greenfield", "Rootwise"),
     ("garden hose", "pruning shears", "watering can", "trowel", "rake", "seed tray")),
)  # fmt: skip
ANONYMOUS_SESSIONS = 5
# Interest by type, as shops log it: mostly views, some carts, a few purchases.
TYPES = (("view", 0.7), ("add_to_cart", 0.18), ("purchase", 0.12))


@dataclass(frozen=True)
class ShopFiles:
    events: Path
    catalog: Path
    users: Path
    user_ids: frozenset[str]
    bought: dict[str, set[str]]  # user id -> items they bought (good records only)


@dataclass(frozen=True)
class Trained:
    data_dir: Path
    result: dict[str, Any]
    wall_s: float


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args: object) -> Result:
    # The command line reads SHOPPER_* settings: a developer's own must not leak in.
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SHOPPER_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=unset)


def ok_json(*args: object) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def item_ids(cluster: int) -> list[str]:
    return [f"sku-{CLUSTERS[cluster][0]}-{i}" for i in range(PER_CLUSTER)]


def write_catalog(path: Path) -> None:
    with path.open("w") as fh:
        for c, (_, category, brands, nouns) in enumerate(CLUSTERS):
            for i, item in enumerate(item_ids(c)):
                record = {
                    "item_id": item,
                    "title": f"{nouns[i % len(nouns)]} model {i}",
                    "category": category,
                    "brand": brands[i % 2],
                    "price": 5.0 + 3 * i,
                }
                fh.write(json.dumps(record) + "\n")


def shopper_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """One shopper's events: 90% in their cluster (favouring its first items), 10% other."""
    cluster = n % 2
    out = []
    for _ in range(rng.randint(8, 30)):
        own = rng.random() < 0.9
        items = item_ids(cluster if own else 1 - cluster)
        item = items[min(int(rng.expovariate(1 / 8)), PER_CLUSTER - 1)]
        kind = rng.choices([t for t, _ in TYPES], [w for _, w in TYPES])[0]
        at = START + timedelta(seconds=rng.uniform(0, DAYS * 86_400))
        event: dict[str, Any] = {"type": kind, "ts": iso(at), "user_id": f"u-{n}", "item_id": item}
        if n % 3:  # the rest get their country from the users file
            event["context"] = {"country": ("GB", "DE")[n % 2], "device": "mobile"}
        out.append(event)
    return out


def anonymous_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    at = START + timedelta(days=rng.uniform(0, DAYS))
    return [
        {"type": "view", "ts": iso(at + timedelta(minutes=m)), "session_id": f"s-{n}",
         "item_id": rng.choice(item_ids(n % 2))}
        for m in range(3)
    ]  # fmt: skip


def write_shop(folder: Path, seed: int = 3) -> ShopFiles:
    rng = random.Random(seed)
    events = [e for n in range(SHOPPERS) for e in shopper_events(rng, n)]
    events += [e for n in range(ANONYMOUS_SESSIONS) for e in anonymous_events(rng, n)]
    events.sort(key=lambda e: e["ts"])
    bought: dict[str, set[str]] = {}
    lines = []
    for i, event in enumerate(events):
        lines.append(json.dumps({"event_id": f"e-{i}", **event}))
        if event["type"] == "purchase":
            bought.setdefault(event["user_id"], set()).add(event["item_id"])
    # Two bad records a real export might hold: a view without its item, and a torn line.
    bad_view = {"event_id": "bad-1", "type": "view", "ts": iso(START), "user_id": "u-0"}
    lines[10:10] = [json.dumps(bad_view), '{"event_id": "bad-2", "type": "vi']
    shop = ShopFiles(
        events=folder / "events.jsonl",
        catalog=folder / "items.jsonl",
        users=folder / "users.csv",
        user_ids=frozenset(f"u-{n}" for n in range(SHOPPERS)),
        bought=bought,
    )
    shop.events.write_text("\n".join(lines) + "\n")
    write_catalog(shop.catalog)
    with shop.users.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "country"])
        writer.writerows([f"u-{n}", ("GB", "DE")[n % 2]] for n in range(SHOPPERS))
    return shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> ShopFiles:
    return write_shop(tmp_path_factory.mktemp("shop"))


def memory_features(folder: Path) -> Path:
    """A config file with the in-memory feature store: the ranker's scratch store fast."""
    path = folder / "memory.toml"
    path.write_text('feature_store = "memory"\n')
    return path


def first_events(shop: ShopFiles, n: int, folder: Path) -> Path:
    """The shop's first `n` event records as a file: too few for the learned ranker."""
    path = folder / "few.jsonl"
    path.write_text("".join(shop.events.read_text().splitlines(keepends=True)[:n]))
    return path


def train_args(shop: ShopFiles, data_dir: Path, *extra: object) -> list[object]:
    files = ["--events", shop.events, "--catalog", shop.catalog, "--users", shop.users]
    return ["train", *files, "--ranker", "--json", "--data-dir", data_dir, *extra]


@pytest.fixture(scope="module")
def trained(shop: ShopFiles, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A data folder holding one model, trained (with tuning) on the shop's files."""
    data_dir = tmp_path_factory.mktemp("trained")
    started = time.perf_counter()
    result = ok_json(*train_args(shop, data_dir))
    return Trained(data_dir, result, time.perf_counter() - started)


@pytest.fixture
def data_dir(trained: Trained, tmp_path: Path) -> Path:
    """A copy of the trained data folder, for a test to change."""
    return Path(shutil.copytree(trained.data_dir, tmp_path / "data"))


def models(data_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ok_json("models", "list", "--json", "--data-dir", data_dir)
    return rows


# --- train -------------------------------------------------------------------------------


def test_train_prints_one_json_object_and_promotes_the_first_version(trained: Trained) -> None:
    result = trained.result
    assert result["promoted"] is True
    assert result["version"]
    assert result["shoppers"] == SHOPPERS + ANONYMOUS_SESSIONS
    assert result["items"] == 2 * PER_CLUSTER
    assert set(result["blends"]) == {"anonymous", "1-9", "10+"}


def test_train_skips_and_counts_bad_records_and_trains_on_the_rest(trained: Trained) -> None:
    assert trained.result["skipped_records"] == 2
    reasons = " ".join(trained.result["skipped_reasons"])
    assert "item_id" in reasons
    assert trained.result["events"] > 500


def test_train_fits_the_learned_ranker_and_stores_it_with_the_version(trained: Trained) -> None:
    ranker = trained.result["ranker"]
    assert ranker["moments"] >= 20 and ranker["rounds"] >= 1
    assert 0 < ranker["validation_ndcg@20"] <= 1
    assert 0 < len(ranker["importance"]) <= 10
    names, shares = zip(*ranker["importance"], strict=True)
    assert set(names) <= set(FEATURE_NAMES)
    assert list(shares) == sorted(shares, reverse=True)  # the most important first
    assert [r["ranker"] for r in models(trained.data_dir)] == [True]

    model = FolderModelStore(trained.data_dir / "models").load(trained.result["version"])
    assert model.ranker is not None
    assert model.ranker.metadata["moments"] == ranker["moments"]
    now = model.trained_until
    cands = candidates_of(model, build_profile(model, "u:u-4", now), model.ranker.candidates, now)
    matrix = candidate_matrix(model, cands, StoreRows({}, {}))
    ranked = order_by_ranker(model.ranker, cands, matrix, 10)
    assert ranked.model == LEARNED and len(ranked.items) == 10
    assert {s.item_id for s in ranked.items} <= set(cands.item_ids)


def test_train_without_enough_moments_for_the_ranker_trains_the_models_alone(
    shop: ShopFiles, tmp_path: Path
) -> None:
    few = first_events(shop, 60, tmp_path)
    config = memory_features(tmp_path)
    result = ok_json("train", "--events", few, "--json", "--data-dir", tmp_path, "--config", config)
    assert "too few" in result["ranker"]["skipped"]
    model = FolderModelStore(tmp_path / "models").load(result["version"])
    assert model.ranker is None
    assert [r["ranker"] for r in models(tmp_path)] == [False]


def test_without_the_feature_store_on_train_fits_no_ranker_unless_asked(
    shop: ShopFiles, tmp_path: Path
) -> None:
    """A ranker serves only where processors read features: by default it is fitted only
    with the feature store on."""
    few = first_events(shop, 60, tmp_path)
    result = ok_json("train", "--events", few, "--json", "--data-dir", tmp_path)
    assert "feature store is off" in result["ranker"]["skipped"]
    assert [r["ranker"] for r in models(tmp_path)] == [False]


def test_train_without_the_feature_store_package_trains_the_models_alone(
    shop: ShopFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shopper.ranker_tasks
    from shopper.errors import MissingExtra

    def not_installed(config: object) -> None:
        raise MissingExtra("feast", "feast")

    monkeypatch.setattr(shopper.ranker_tasks, "_scratch_store", not_installed)
    few = first_events(shop, 60, tmp_path)
    result = ok_json("train", "--events", few, "--ranker", "--json", "--data-dir", tmp_path)
    assert "pip install 'shopper[feast]'" in result["ranker"]["skipped"]
    assert "--no-ranker" in result["ranker"]["skipped"]
    assert [r["ranker"] for r in models(tmp_path)] == [False]


def test_train_without_any_data_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("train", "--json", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 2
    assert "no archived events" in result.stderr
    assert "--events" in result.stderr and "--dataset" in result.stderr
    assert result.stdout == ""


# --- models list / promote ---------------------------------------------------------------


def test_models_list_shows_the_first_version_promoted(trained: Trained) -> None:
    rows = models(trained.data_dir)
    assert [(r["version"], r["promoted"]) for r in rows] == [(trained.result["version"], True)]
    assert rows[0]["shoppers"] == SHOPPERS + ANONYMOUS_SESSIONS


def test_a_second_version_waits_until_promoted(
    shop: ShopFiles, trained: Trained, data_dir: Path
) -> None:
    first = trained.result["version"]
    second = ok_json(*train_args(shop, data_dir))
    assert second["promoted"] is False
    assert {r["version"]: r["promoted"] for r in models(data_dir)} == {
        first: True,
        second["version"]: False,
    }
    result = cli("models", "promote", second["version"], "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"promoted": second["version"]}
    assert {r["version"]: r["promoted"] for r in models(data_dir)} == {
        first: False,
        second["version"]: True,
    }


def test_promoting_an_unknown_version_names_the_known_ones(
    trained: Trained, data_dir: Path
) -> None:
    result = cli("models", "promote", "19990101T000000Z-dead", "--data-dir", data_dir)
    assert result.exit_code == 2
    assert "19990101T000000Z-dead" in result.stderr
    assert trained.result["version"] in result.stderr
    assert [r["promoted"] for r in models(data_dir)] == [True]


def test_retrain_reuses_the_tuned_settings_and_is_faster(
    shop: ShopFiles, trained: Trained, data_dir: Path
) -> None:
    started = time.perf_counter()
    again = ok_json(*train_args(shop, data_dir, "--retrain"))
    wall_s = time.perf_counter() - started
    first = trained.result["version"]
    assert again["version"] != first
    assert again["blends"] == trained.result["blends"]
    model = FolderModelStore(data_dir / "models").load(again["version"])
    assert model.metadata["tuned_in"] == first
    assert wall_s < trained.wall_s
    # The ranker reads the models' scores, scaled as the tuned settings scale them: kept.
    assert model.ranker is not None
    assert again["ranker"] == trained.result["ranker"]


# --- export ------------------------------------------------------------------------------


def exported(data_dir: Path, out: Path, *extra: object) -> dict[str, list[tuple[int, str, float]]]:
    args = ["export", "--k", 5, "--out", out, "--cache-url", "memory://", "--data-dir", data_dir]
    summary = ok_json(*args, *extra)
    assert summary["rows"] > 0
    assert out.read_text().splitlines()[0] == "user_id,rank,item_id,score"
    lists: dict[str, list[tuple[int, str, float]]] = {}
    with out.open(newline="") as fh:
        for row in csv.DictReader(fh):
            entry = (int(row["rank"]), row["item_id"], float(row["score"]))
            lists.setdefault(row["user_id"], []).append(entry)
    assert summary["rows"] == sum(len(v) for v in lists.values())
    return lists


def test_export_writes_ranked_lists_of_unbought_items_for_known_users(
    shop: ShopFiles, data_dir: Path, tmp_path: Path
) -> None:
    lists = exported(data_dir, tmp_path / "lists.csv")
    assert set(lists) <= shop.user_ids  # users only: no anonymous sessions
    assert len(lists) >= SHOPPERS * 0.9
    for user, rows in lists.items():
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert len(rows) <= 5
        scores = [r[2] for r in rows]
        assert scores == sorted(scores, reverse=True)
        items = [r[1] for r in rows]
        assert len(set(items)) == len(items)
        assert not set(items) & shop.bought.get(user, set()), user


def test_export_for_the_users_of_a_file(shop: ShopFiles, data_dir: Path, tmp_path: Path) -> None:
    wanted = tmp_path / "wanted.csv"
    wanted.write_text("user_id,country\nu-4,GB\nu-7,DE\n")
    lists = exported(data_dir, tmp_path / "lists.csv", "--users", wanted)
    assert set(lists) == {"u-4", "u-7"}


# --- evaluate ----------------------------------------------------------------------------


def test_evaluate_reports_every_model_overall_and_per_tier(shop: ShopFiles, tmp_path: Path) -> None:
    files = ["--events", shop.events, "--catalog", shop.catalog]
    report = ok_json("evaluate", *files, "--json", "--test-days", 10, "--data-dir", tmp_path)
    assert report["k"] == 20
    names = set(report["models"])
    assert {"popularity", "content", "ease", "itemknn", "als", "shopper"} <= names
    for result in report["models"].values():
        assert {"recall", "ndcg", "mrr", "coverage"} <= set(result["overall"])
        assert set(result["tiers"]) == {"anonymous", "1-9", "10+"}
        for metrics in result["tiers"].values():
            assert {"recall", "ndcg", "mrr", "coverage", "users"} <= set(metrics)
    assert report["models"]["shopper"]["overall"]["users"] > 0
    # The learned ranker, on the tiered system's candidates, for the same shoppers.
    learned, shopper = report["models"][LEARNED], report["models"]["shopper"]
    assert learned["overall"]["users"] == shopper["overall"]["users"]
    assert {t: m["users"] for t, m in learned["tiers"].items()} == {
        t: m["users"] for t, m in shopper["tiers"].items()
    }
    assert set(report["differences"]["learned - shopper"]) == {
        "recall", "recall_se", "ndcg", "ndcg_se"
    }  # fmt: skip
    assert report["ranker"]["moments"] >= 20


def test_evaluate_sessions_with_the_learned_ranker(shop: ShopFiles, tmp_path: Path) -> None:
    files = ["--events", shop.events, "--catalog", shop.catalog, "--protocol", "session"]
    config = ["--config", memory_features(tmp_path), "--data-dir", tmp_path]
    report = ok_json("evaluate", *files, "--test-days", 10, "--json", *config)
    assert report["task"] == "next item"
    assert set(report["models"]) == {"no-session", "session", LEARNED}
    learned = report["models"][LEARNED]["overall"]
    assert learned["users"] == report["cases"] > 0
    assert {"recall", "recall_se", "ndcg", "ndcg_se"} <= set(learned)
    difference = report["differences"]["learned - session"]
    assert difference["recall_se"] > 0 and difference["ndcg_se"] > 0
    assert report["ranker"]["moments"] >= 20


def test_evaluate_without_the_ranker_reports_the_tiered_system_alone(
    shop: ShopFiles, tmp_path: Path
) -> None:
    files = ["--events", shop.events, "--catalog", shop.catalog, "--protocol", "session"]
    report = ok_json("evaluate", *files, "--no-ranker", "--json", "--data-dir", tmp_path)
    assert set(report["models"]) == {"no-session", "session"}
    assert list(report["differences"]) == ["session - no-session"]
    assert "ranker" not in report


def test_train_reads_the_event_archive_by_default(shop: ShopFiles, tmp_path: Path) -> None:
    """What the processor archived (feature store on) is what `shopper train` learns from."""
    from shopper.adapters.parquet_event_archive import ParquetEventArchive
    from shopper.codec import ItemIn, parse_event
    from shopper.errors import InvalidEvent
    from shopper.formats import read_records

    archive = ParquetEventArchive(tmp_path / "features" / "archive")
    events = []
    for record in read_records(shop.events):
        try:
            events.append(parse_event(record).to_domain())
        except InvalidEvent:  # the file's two bad records never reached an archive
            continue
    items = [ItemIn.model_validate(r).to_domain() for r in read_records(shop.catalog)]
    upserts = [
        parse_event(
            {"event_id": f"up-{i.item_id}", "type": "item_upsert", "ts": iso(START),
             "item": {"item_id": i.item_id, "title": i.title}}
        ).to_domain()
        for i in items
    ]  # fmt: skip
    archive.append([*upserts, *events])
    archive.flush()

    result = ok_json("train", "--ranker", "--json", "--data-dir", tmp_path)
    assert result["events"] == len(events) - sum(e.is_catalog for e in events)
    assert result["items"] == len(items)
    assert result["skipped_records"] == 0
    # The ranker's features: the archive backfilled into the configured (Feast) store's
    # offline files, as `shopper features backfill` would.
    assert result["ranker"]["moments"] >= 20
    assert list((tmp_path / "features" / "feast").rglob("*.parquet"))
