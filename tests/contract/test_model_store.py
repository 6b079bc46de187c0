"""One contract for every ModelStore: in memory and a folder of versions.

The models are real: fitted by the trainer on a few synthetic shoppers, once per module.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shopper.adapters.folder_model_store import FolderModelStore
from shopper.adapters.memory_model_store import InMemoryModelStore
from shopper.domain.model import RankingModel
from shopper.domain.recommender import LiveInteraction, Ranked, build_profile, recommend
from shopper.domain.tier import Tier
from shopper.errors import ShopperError
from shopper.ports.model_store import ModelStore, ModelStoreError
from tests.model_factories import assert_same_model, ranked_model, ranking_model


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelStore:
    if request.param == "memory":
        return InMemoryModelStore()
    return FolderModelStore(tmp_path / "models")


@pytest.fixture(scope="module")
def first() -> RankingModel:
    return ranking_model("20261130T061502Z-3f2a", seed=1, trained_at=1_700_000_000.0)


@pytest.fixture(scope="module")
def second() -> RankingModel:
    return ranking_model("20261201T061502Z-9c0d", seed=2, trained_at=1_700_086_400.0)


@pytest.fixture(scope="module")
def ranked() -> RankingModel:
    """A model with a learned ranker."""
    return ranked_model("20261202T061502Z-77aa", seed=1, trained_at=1_700_172_800.0)


def test_a_saved_model_loads_equal_in_every_array_and_field(
    store: ModelStore, first: RankingModel
) -> None:
    assert store.save(first) == first.version
    assert_same_model(store.load(first.version), first)


def test_a_loaded_model_ranks_every_kind_of_shopper_the_same(
    store: ModelStore, first: RankingModel
) -> None:
    store.save(first)
    loaded = store.load(first.version)
    want, got = rankings(first), rankings(loaded)
    assert {r.tier for r in want} == set(Tier)
    assert all(r.items for r in want)
    assert got == want


def rankings(model: RankingModel) -> list[Ranked]:
    """Top 10 for known shoppers of every tier, a shopper known only by live events and
    an anonymous one in a segment, an hour after the data ends (new items are young)."""
    now = model.trained_until + 3600.0
    live = [LiveInteraction("sku-3", 3.0, now - 60.0), LiveInteraction("sku-7", 5.0, now, True)]
    known = [s for s, i in model.histories.subjects.items() if i % 7 == 0]
    profiles = [build_profile(model, s, now, live[:1], live_count=1) for s in known]
    profiles.append(build_profile(model, "s:new", now, live, live_count=2))
    profiles.append(build_profile(model, None, now, segments=["country:de", "hour:6-11"]))
    few = next(
        s for s, i in model.histories.subjects.items() if model.histories.interactions[i] < 8
    )
    profiles.append(build_profile(model, few, now, viewed=["sku-1"], cart=["sku-2"]))
    return [recommend(model, p, 10, now, unavailable=["sku-5"]) for p in profiles]


def test_a_model_with_a_learned_ranker_loads_with_the_same_ranker(
    store: ModelStore, ranked: RankingModel
) -> None:
    store.save(ranked)
    loaded = store.load(ranked.version)
    assert_same_model(loaded, ranked)  # the ranker's text, features, metadata and scores
    assert loaded.ranker is not None and ranked.ranker is not None
    matrix = np.random.default_rng(1).random((20, len(ranked.ranker.feature_names)))
    scores = loaded.ranker.scorer.predict(matrix)
    assert len(set(scores.tolist())) > 1  # a real ranker, not a constant
    info = store.versions()[0]
    assert info.metadata["ranker"] == dict(ranked.ranker.metadata)


def test_a_ranker_fitted_on_other_features_is_refused(
    store: ModelStore, ranked: RankingModel
) -> None:
    assert ranked.ranker is not None
    names = ranked.ranker.feature_names
    renamed = replace(ranked.ranker, feature_names=(*names[:-1], "retired_feature"))
    with pytest.raises(ModelStoreError, match="fitted on other features") as raised:
        store.save(replace(ranked, ranker=renamed))
    assert "no longer computed: retired_feature" in str(raised.value)
    assert f"unknown to the ranker: {names[-1]}" in str(raised.value)
    with pytest.raises(ModelStoreError, match="another order"):
        store.save(replace(ranked, ranker=replace(ranked.ranker, feature_names=names[::-1])))
    assert store.versions() == []


def test_versions_are_listed_oldest_first_with_their_metadata(
    store: ModelStore, first: RankingModel, second: RankingModel
) -> None:
    assert store.versions() == []
    unstamped = ranking_model("unversioned", seed=3)  # saved now: the newest
    for model in (unstamped, second, first):
        store.save(model)
    infos = store.versions()
    assert [i.version for i in infos] == [first.version, second.version, "unversioned"]
    assert [i.trained_at for i in infos[:2]] == [1_700_000_000.0, 1_700_086_400.0]
    assert infos[0].metadata == first.metadata
    assert infos[0].metadata["settings"]["als_factors"] == 4
    assert infos[2].metadata == unstamped.metadata
    assert all(i.size_bytes > 0 and not i.promoted for i in infos)


def test_nothing_is_promoted_before_the_first_promotion(
    store: ModelStore, first: RankingModel
) -> None:
    store.save(first)
    assert store.promoted() is None
    assert store.promoted_stamp() is None
    assert store.load_promoted() is None


def test_promotion_picks_the_served_version_and_changes_the_stamp(
    store: ModelStore, first: RankingModel, second: RankingModel
) -> None:
    store.save(first)
    store.save(second)
    store.promote(first.version)
    stamp = store.promoted_stamp()
    assert stamp is not None
    assert store.promoted_stamp() == stamp  # polling alone changes nothing
    assert store.promoted() == first.version
    served = store.load_promoted()
    assert served is not None
    assert_same_model(served, first)
    assert [i.promoted for i in store.versions()] == [True, False]

    store.promote(second.version)
    assert store.promoted_stamp() not in (None, stamp)
    assert store.promoted() == second.version
    served = store.load_promoted()
    assert served is not None and served.version == second.version
    assert [i.promoted for i in store.versions()] == [False, True]

    store.promote(first.version)  # a rollback is a promotion like any other
    assert store.promoted_stamp() == stamp
    assert store.promoted() == first.version


def test_an_unknown_version_is_an_error_naming_the_stored_ones(
    store: ModelStore, first: RankingModel, second: RankingModel
) -> None:
    with pytest.raises(ModelStoreError, match=r"'v404'.*no models are stored"):
        store.load("v404")
    store.save(first)
    store.save(second)
    store.promote(first.version)
    known = f"stored versions, oldest first: {first.version}, {second.version}"
    with pytest.raises(ModelStoreError, match="'v404'") as raised:
        store.load("v404")
    assert known in str(raised.value)
    with pytest.raises(ModelStoreError, match=known):
        store.promote("v404")
    assert store.promoted() == first.version
    with pytest.raises(ModelStoreError, match=re.escape(f"no model version '../{first.version}'")):
        store.load("../" + first.version)
    assert issubclass(ModelStoreError, ShopperError)


def test_a_stored_version_is_never_replaced(
    store: ModelStore, first: RankingModel, second: RankingModel
) -> None:
    store.save(first)
    impostor = ranking_model(first.version, seed=2)
    with pytest.raises(ModelStoreError, match=f"{first.version} is already stored"):
        store.save(impostor)
    assert_same_model(store.load(first.version), first)
    assert [i.version for i in store.versions()] == [first.version]


@pytest.mark.parametrize("version", ["", "../up", "a/b", ".hidden", "-flag", "x" * 129])
def test_a_version_that_is_not_one_plain_name_is_refused(
    store: ModelStore, first: RankingModel, version: str
) -> None:
    with pytest.raises(ModelStoreError, match="cannot be stored"):
        store.save(replace(first, version=version))
    assert store.versions() == []


def test_metadata_that_is_not_json_is_refused(store: ModelStore, first: RankingModel) -> None:
    with pytest.raises(ModelStoreError, match="metadata must be JSON"):
        store.save(first.with_blends(first.blends, when=object()))
    assert store.versions() == []


# Folder only: the layout on disk, half-written versions, replicas sharing the folder.


def test_folder_layout_is_one_folder_per_version_and_a_promoted_file(
    tmp_path: Path, first: RankingModel
) -> None:
    store = FolderModelStore(tmp_path / "models")
    store.save(first)
    store.promote(first.version)
    root = tmp_path / "models"
    assert sorted(p.name for p in root.iterdir()) == sorted(["PROMOTED", first.version])
    assert (root / "PROMOTED").read_text() == first.version + "\n"
    folder = root / first.version
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "model.json"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert npz["item_ids"].tolist() == list(first.item_ids)
        assert npz["history_subjects"].dtype.kind == "U"
    described = json.loads((folder / "model.json").read_text())
    assert described["settings"]["repurchase"] == "allow"
    assert described["settings"]["thresholds"] == {"few_from": 2, "many_from": 8}
    assert set(described["blends"]) == {t.value for t in Tier}
    assert described["metadata"] == first.metadata
    assert described["ranker"] is None
    assert described["format"] == 1


def test_folder_keeps_the_ranker_as_lightgbm_text_beside_its_description(
    tmp_path: Path, ranked: RankingModel
) -> None:
    assert ranked.ranker is not None
    root = tmp_path / "models"
    FolderModelStore(root).save(ranked)
    folder = root / ranked.version
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "model.json", "ranker.txt"]
    assert (folder / "ranker.txt").read_text() == ranked.ranker.text
    description = json.loads((folder / "model.json").read_text())
    # A format older readers refuse: they would serve the model without its ranker.
    assert description["format"] == 2
    described = description["ranker"]
    assert described == {
        "feature_names": list(ranked.ranker.feature_names),
        "candidates": ranked.ranker.candidates,
        "metadata": dict(ranked.ranker.metadata),
    }


def test_folder_refuses_to_load_a_ranker_of_features_this_version_does_not_compute(
    tmp_path: Path, ranked: RankingModel
) -> None:
    """As an older shopper would have stored it: served without its ranker, the model
    would rank worse than what was promoted, so it does not load at all."""
    store = FolderModelStore(tmp_path / "models")
    store.save(ranked)
    store.promote(ranked.version)
    path = tmp_path / "models" / ranked.version / "model.json"
    described = json.loads(path.read_text())
    described["ranker"]["feature_names"][3] = "retired_feature"
    path.write_text(json.dumps(described))
    for load in (lambda: store.load(ranked.version), store.load_promoted):
        with pytest.raises(ModelStoreError, match="no longer computed: retired_feature"):
            load()
    assert [i.version for i in store.versions()] == [ranked.version]  # still listed


def test_folder_version_with_its_ranker_file_broken_or_gone_cannot_be_read(
    tmp_path: Path, ranked: RankingModel
) -> None:
    store = FolderModelStore(tmp_path / "models")
    store.save(ranked)
    (tmp_path / "models" / ranked.version / "ranker.txt").write_text("not a model")
    with pytest.raises(ModelStoreError, match=r"cannot be read: ranker\.txt"):
        store.load(ranked.version)
    (tmp_path / "models" / ranked.version / "ranker.txt").unlink()
    with pytest.raises(ModelStoreError, match=r"cannot be read.*No such file.*ranker\.txt"):
        store.load(ranked.version)


def test_folder_ignores_what_is_not_a_whole_version(tmp_path: Path, first: RankingModel) -> None:
    root = tmp_path / "models"
    store = FolderModelStore(root)
    store.save(first)
    leftover = root / ".tmp-v9-1a2b3c4d"  # a writer died before its rename
    leftover.mkdir()
    (leftover / "arrays.npz").write_bytes(b"PK\x03\x04 cut short")
    (root / "v8").mkdir()  # copied by hand, still without its description
    (root / "v8" / "arrays.npz").write_bytes(b"")
    assert [i.version for i in store.versions()] == [first.version]
    for version in ("v8", ".tmp-v9-1a2b3c4d"):
        with pytest.raises(ModelStoreError, match="no model version"):
            store.load(version)
        with pytest.raises(ModelStoreError, match="no model version"):
            store.promote(version)


def test_folder_stores_on_one_root_see_each_others_versions_and_promotions(
    tmp_path: Path, first: RankingModel, second: RankingModel
) -> None:
    trainer = FolderModelStore(tmp_path / "models")
    processor = FolderModelStore(tmp_path / "models")
    assert processor.promoted_stamp() is None  # no folder yet: nothing to serve
    trainer.save(first)
    trainer.promote(first.version)
    stamp = processor.promoted_stamp()
    assert stamp is not None
    served = processor.load_promoted()
    assert served is not None
    assert_same_model(served, first)

    trainer.save(second)
    assert processor.promoted_stamp() == stamp
    processor.promote(second.version)
    assert trainer.promoted() == second.version
    assert processor.promoted_stamp() != stamp
    with pytest.raises(ModelStoreError, match="already stored"):
        processor.save(second)


def test_folder_promoted_file_can_live_elsewhere(tmp_path: Path, first: RankingModel) -> None:
    shared = tmp_path / "shared" / "SERVED"
    store = FolderModelStore(tmp_path / "models", promoted_file=shared)
    store.save(first)
    store.promote(first.version)
    assert shared.read_text().strip() == first.version
    assert not (tmp_path / "models" / "PROMOTED").exists()
    assert FolderModelStore(tmp_path / "models").promoted() is None
    assert FolderModelStore(tmp_path / "other", promoted_file=shared).promoted() == first.version
    assert sorted(p.name for p in shared.parent.iterdir()) == ["SERVED"]  # no temp file left


def test_folder_loses_a_race_to_save_one_version_cleanly(
    tmp_path: Path, first: RankingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    rename = os.rename

    def other_writer_first(src: Path, dst: Path) -> None:
        monkeypatch.setattr(os, "rename", rename)
        FolderModelStore(root).save(first)  # lands between our check and our rename
        rename(src, dst)

    monkeypatch.setattr(os, "rename", other_writer_first)
    with pytest.raises(ModelStoreError, match="already stored"):
        FolderModelStore(root).save(first)
    assert sorted(p.name for p in root.iterdir()) == [first.version]
    assert_same_model(FolderModelStore(root).load(first.version), first)


def test_folder_promoted_version_gone_missing_is_an_error(
    tmp_path: Path, first: RankingModel
) -> None:
    store = FolderModelStore(tmp_path / "models")
    store.save(first)
    (tmp_path / "models" / "PROMOTED").write_text("v-deleted\n")
    assert store.promoted() == "v-deleted"
    with pytest.raises(ModelStoreError, match=f"'v-deleted'.*{first.version}"):
        store.load_promoted()
