"""The model store as a folder (local disk or a shared mount), one sub-folder per version:

    root/<version>/arrays.npz   every numpy array of the model (no pickles)
    root/<version>/model.json   everything else: settings, blends, names, metadata
    root/<version>/ranker.txt   the learned ranker's LightGBM model, if it has one
    root/PROMOTED               the promoted version (the file's path is configurable)

A version is written into a hidden temporary folder (`root/.tmp-*`) and renamed into
place, and PROMOTED is replaced whole, so processor replicas sharing the folder see a
version complete or not at all, and the old promotion or the new one, never half of either.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from shopper.domain.learned import LearnedRanker
from shopper.domain.model import (
    Blend,
    Factors,
    Histories,
    ModelSettings,
    Neighbours,
    Popularity,
    RankingModel,
    Repurchase,
)
from shopper.domain.tier import Tier, TierThresholds
from shopper.ports.model_store import (
    VERSION_PATTERN,
    ModelInfo,
    ModelStoreError,
    already_stored,
    check_storable,
    ranker_mismatch,
    trained_at_of,
    unknown_version,
)

FORMAT = 1
# A version with a learned ranker: a reader that knows only format 1 would serve the
# model without its ranker, so it must refuse it instead.
FORMAT_WITH_RANKER = 2
ARRAYS = "arrays.npz"
DESCRIPTION = "model.json"
RANKER = "ranker.txt"
PROMOTED = "PROMOTED"
TEMP_PREFIX = ".tmp-"

Arrays = dict[str, npt.NDArray[Any]]

# numpy's stubs read `**arrays` as its own keyword arguments (`allow_pickle: bool`).
_savez: Callable[..., None] = np.savez


class FolderModelStore:
    """Versions under `root`; the promotion in `promoted_file` (default `root/PROMOTED`).
    Neither needs to exist before the first save."""

    def __init__(self, root: Path, promoted_file: Path | None = None) -> None:
        self.root = Path(root)
        self.promoted_file = Path(promoted_file) if promoted_file else self.root / PROMOTED

    def save(self, model: RankingModel) -> str:
        check_storable(model)
        target = self.root / model.version
        if target.exists():
            raise already_stored(model.version, str(self.root))
        arrays, description = encode(model)
        description["saved_at"] = time.time()
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{TEMP_PREFIX}{model.version}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            with open(temp / ARRAYS, "xb") as fh:
                _savez(fh, **arrays)
                _flush(fh)
            if model.ranker is not None:
                with open(temp / RANKER, "x", encoding="utf-8") as fh:
                    fh.write(model.ranker.text)
                    _flush(fh)
            # Written last: a folder with its description is a whole version.
            with open(temp / DESCRIPTION, "x", encoding="utf-8") as fh:
                json.dump(description, fh, ensure_ascii=False)
                _flush(fh)
            os.rename(temp, target)  # fails if another writer got there first
        except BaseException as exc:
            shutil.rmtree(temp, ignore_errors=True)
            if isinstance(exc, OSError) and target.exists():
                raise already_stored(model.version, str(self.root)) from None
            raise
        _sync_folder(self.root)
        return model.version

    def load(self, version: str) -> RankingModel:
        folder = self._folder(version)
        try:
            description = _read_description(folder)
            with np.load(folder / ARRAYS, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            ranker_text = None
            if description.get("ranker") is not None:
                ranker_text = (folder / RANKER).read_text(encoding="utf-8")
            return decode(arrays, description, ranker_text)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ModelStoreError(f"model {version} in {folder} cannot be read: {exc}") from exc

    def versions(self) -> list[ModelInfo]:
        promoted = self.promoted()
        infos = [self._info(folder, promoted) for folder in self._folders()]
        return sorted(infos, key=lambda i: (i.trained_at, i.version))

    def promote(self, version: str) -> None:
        self._folder(version)
        parent = self.promoted_file.parent
        parent.mkdir(parents=True, exist_ok=True)
        temp = parent / f".{self.promoted_file.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(temp, "x", encoding="utf-8") as fh:
                fh.write(version + "\n")
                _flush(fh)
            os.replace(temp, self.promoted_file)
        finally:
            temp.unlink(missing_ok=True)
        _sync_folder(parent)

    def promoted(self) -> str | None:
        try:
            version = self.promoted_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def load_promoted(self) -> RankingModel | None:
        version = self.promoted()
        return None if version is None else self.load(version)

    def promoted_stamp(self) -> str | None:
        # The version itself: versions are immutable, so a new model means a new name.
        return self.promoted()

    def _folder(self, version: str) -> Path:
        """The folder of a stored version; anything else (a path, a half-written
        version) is an unknown version."""
        folder = self.root / version
        if not VERSION_PATTERN.fullmatch(version) or not (folder / DESCRIPTION).is_file():
            known = [i.version for i in self.versions()]
            raise unknown_version(version, known, str(self.root))
        return folder

    def _folders(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if VERSION_PATTERN.fullmatch(folder.name) and (folder / DESCRIPTION).is_file():
                yield folder

    def _info(self, folder: Path, promoted: str | None) -> ModelInfo:
        try:
            description = _read_description(folder)
            metadata = description["metadata"]
            trained_at = trained_at_of(metadata, saved_at=description["saved_at"])
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise ModelStoreError(f"{folder / DESCRIPTION} cannot be read: {exc!r}") from exc
        return ModelInfo(folder.name, trained_at, folder.name == promoted, metadata, size)


# --- a model as arrays and a description, and back ---------------------------------------


def encode(model: RankingModel) -> tuple[Arrays, dict[str, Any]]:
    """Every array of `model` by name, and the JSON description of the rest."""
    h = model.histories
    arrays: Arrays = {
        "item_ids": _strings(model.item_ids, "item ids"),
        "listed_at": model.listed_at,
        "has_behaviour": model.has_behaviour,
        "content_index": model.content.index,
        "content_weight": model.content.weight,
        "history_subjects": _strings(h.subjects, "shoppers"),
        "history_rows": np.fromiter(h.subjects.values(), np.int64, len(h.subjects)),
        "history_indptr": h.indptr,
        "history_items": h.items,
        "history_interest": h.interest,
        "history_bought": h.bought,
        "history_last_ts": h.last_ts,
        "history_interactions": h.interactions,
    }
    for i, vector in enumerate(model.popularity.segments.values()):
        arrays[f"popularity_{i}"] = vector
    for i, neighbours in enumerate(model.neighbours.values()):
        arrays[f"neighbours_{i}_index"] = neighbours.index
        arrays[f"neighbours_{i}_weight"] = neighbours.weight
    if model.factors is not None:
        arrays["factors_items"] = model.factors.items
        arrays["factors_gram"] = model.factors.gram
    if h.segments:
        arrays.update(_encode_segments(h.segments))
    objects = [name for name, a in arrays.items() if a.dtype.hasobject]
    if objects:  # they would be pickled, and the store loads no pickles
        raise ModelStoreError(f"model {model.version}: object arrays cannot be stored: {objects}")
    return arrays, _describe(model)


def _describe(model: RankingModel) -> dict[str, Any]:
    s = model.settings
    factors = model.factors
    return {
        "format": FORMAT if model.ranker is None else FORMAT_WITH_RANKER,
        "version": model.version,
        "trained_until": model.trained_until,
        "settings": {
            "repurchase": s.repurchase.value,
            "thresholds": {"few_from": s.thresholds.few_from, "many_from": s.thresholds.many_from},
            "interest_half_life_s": s.interest_half_life_s,
            "own_half_life_s": s.own_half_life_s,
            "new_item_hours": s.new_item_hours,
        },
        "blends": {tier.value: dict(blend.weights) for tier, blend in model.blends.items()},
        "popularity": {
            "segments": list(model.popularity.segments),
            "segment_weight": model.popularity.segment_weight,
        },
        "neighbours": list(model.neighbours),
        "factors": None
        if factors is None
        else {"regularization": factors.regularization, "alpha": factors.alpha},
        "metadata": dict(model.metadata),
        "ranker": None if model.ranker is None else _describe_ranker(model.ranker),
    }


def _describe_ranker(ranker: LearnedRanker) -> dict[str, Any]:
    """The ranker but its text (kept in `RANKER`, beside the description)."""
    return {
        "feature_names": list(ranker.feature_names),
        "candidates": ranker.candidates,
        "metadata": dict(ranker.metadata),
    }


def decode(
    arrays: Mapping[str, npt.NDArray[Any]],
    description: Mapping[str, Any],
    ranker_text: str | None = None,
) -> RankingModel:
    """The model `encode` took apart; `ranker_text` is the learned ranker's model, if the
    description names one."""
    if description.get("format") not in (FORMAT, FORMAT_WITH_RANKER):
        raise ValueError(f"unknown model format {description.get('format')!r}")
    d = description
    popularity = d["popularity"]
    factors = d["factors"]
    return RankingModel(
        version=d["version"],
        item_ids=tuple(arrays["item_ids"].tolist()),
        listed_at=arrays["listed_at"],
        has_behaviour=arrays["has_behaviour"],
        popularity=Popularity(
            {name: arrays[f"popularity_{i}"] for i, name in enumerate(popularity["segments"])},
            popularity["segment_weight"],
        ),
        content=Neighbours(arrays["content_index"], arrays["content_weight"]),
        neighbours={
            name: Neighbours(arrays[f"neighbours_{i}_index"], arrays[f"neighbours_{i}_weight"])
            for i, name in enumerate(d["neighbours"])
        },
        factors=None
        if factors is None
        else Factors(
            arrays["factors_items"],
            arrays["factors_gram"],
            factors["regularization"],
            factors["alpha"],
        ),
        blends={Tier(tier): Blend(dict(weights)) for tier, weights in d["blends"].items()},
        histories=_decode_histories(arrays),
        settings=_decode_settings(d["settings"]),
        trained_until=d["trained_until"],
        metadata=d["metadata"],
        ranker=_decode_ranker(d, ranker_text),
    )


def _decode_ranker(d: Mapping[str, Any], text: str | None) -> LearnedRanker | None:
    described = d.get("ranker")  # absent before rankers were stored: no ranker
    if described is None:
        return None
    if text is None:
        raise ValueError(f"the description names a learned ranker but {RANKER} is missing")
    names = tuple(described["feature_names"])
    # Scoring our columns with a model fitted on other ones would rank at random: refuse,
    # rather than serve the model without the ranker it was promoted with.
    if error := ranker_mismatch(d["version"], names):
        raise error
    from lightgbm.basic import LightGBMError

    from shopper.adapters.lightgbm_scorer import LightGBMScorer

    try:
        scorer = LightGBMScorer(text)
    except LightGBMError as exc:
        raise ValueError(f"{RANKER}: {exc}") from exc
    return LearnedRanker(text, scorer, names, int(described["candidates"]), described["metadata"])


def _decode_settings(s: Mapping[str, Any]) -> ModelSettings:
    return ModelSettings(
        repurchase=Repurchase(s["repurchase"]),
        thresholds=TierThresholds(**s["thresholds"]),
        interest_half_life_s=s["interest_half_life_s"],
        own_half_life_s=s["own_half_life_s"],
        new_item_hours=s["new_item_hours"],
    )


def _decode_histories(arrays: Mapping[str, npt.NDArray[Any]]) -> Histories:
    subjects = arrays["history_subjects"].tolist()
    rows = arrays["history_rows"].tolist()
    return Histories(
        subjects=dict(zip(subjects, rows, strict=True)),
        indptr=arrays["history_indptr"],
        items=arrays["history_items"],
        interest=arrays["history_interest"],
        bought=arrays["history_bought"],
        last_ts=arrays["history_last_ts"],
        interactions=arrays["history_interactions"],
        segments=_decode_segments(arrays),
    )


def _encode_segments(segments: Sequence[Sequence[str]]) -> Arrays:
    """Each shopper's segments as CSR rows of codes into one list of distinct names."""
    codes: dict[str, int] = {}
    flat = [codes.setdefault(name, len(codes)) for row in segments for name in row]
    lengths = np.fromiter((len(row) for row in segments), np.int64, len(segments))
    return {
        "history_segment_names": _strings(codes, "segments"),
        "history_segment_indptr": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "history_segment_codes": np.asarray(flat, dtype=np.int32),
    }


def _decode_segments(arrays: Mapping[str, npt.NDArray[Any]]) -> tuple[tuple[str, ...], ...]:
    if "history_segment_indptr" not in arrays:
        return ()
    names = arrays["history_segment_names"].tolist()
    indptr = arrays["history_segment_indptr"].tolist()
    codes = arrays["history_segment_codes"].tolist()
    return tuple(tuple(names[c] for c in codes[a:b]) for a, b in itertools.pairwise(indptr))


def _strings(values: Sequence[str] | Mapping[str, Any], what: str) -> npt.NDArray[np.str_]:
    # A numpy string drops trailing NULs: refuse rather than load different ids.
    if any(v.endswith("\x00") for v in values):
        raise ModelStoreError(f"{what} ending in a NUL character cannot be stored")
    return np.array(list(values), dtype=np.str_)


def _read_description(folder: Path) -> dict[str, Any]:
    with open(folder / DESCRIPTION, encoding="utf-8") as fh:
        description: dict[str, Any] = json.load(fh)
    return description


def _flush(fh: IO[Any]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _sync_folder(path: Path) -> None:
    """Make a rename in `path` durable, where the platform allows (not on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
