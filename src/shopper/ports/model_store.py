"""The model store: trained ranking models by version, and which one is promoted (served).

Versions are immutable once saved. Promotion is one pointer that every processor replica
polls through `promoted_stamp` and follows with `load_promoted`, so a new model goes live
without a restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shopper.domain.learned import FEATURE_NAMES
from shopper.domain.model import RankingModel
from shopper.errors import ShopperError

# A version is one path segment wherever it is stored: `20261130T061502Z-3f2a`.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHOWN_VERSIONS = 10


class ModelStoreError(ShopperError):
    """A model version that is unknown, already stored, unnamed or unreadable."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One stored version, without its arrays."""

    version: str
    trained_at: float  # the model's metadata `trained_at`, else when it was saved
    promoted: bool
    metadata: Mapping[str, Any]  # the model's own metadata
    size_bytes: int = 0  # what the stored model takes (its files; in memory, its arrays)


class ModelStore(Protocol):
    def save(self, model: RankingModel) -> str:
        """Store `model` under `model.version` and return the version. Saving a version
        already stored, a version that is not one path segment (`VERSION_PATTERN`) or
        metadata that is not JSON raises `ModelStoreError`."""
        ...

    def load(self, version: str) -> RankingModel:
        """The model saved as `version`; an unknown one raises `ModelStoreError`."""
        ...

    def versions(self) -> list[ModelInfo]:
        """Every stored version, oldest first (by `trained_at`, then version)."""
        ...

    def promote(self, version: str) -> None:
        """Make `version` the one processors serve; an unknown one raises `ModelStoreError`."""
        ...

    def promoted(self) -> str | None:
        """The promoted version, or None before the first promotion."""
        ...

    def load_promoted(self) -> RankingModel | None:
        """The promoted model, or None before the first promotion."""
        ...

    def promoted_stamp(self) -> str | None:
        """A cheap token that changes whenever the promotion does (None: nothing promoted),
        for a running processor to poll before it reloads. Compare it, do not parse it."""
        ...


def check_storable(model: RankingModel) -> None:
    """What every store asks of a model before saving it: a version usable as a name,
    JSON metadata (so a model saved in memory could be saved to files too), and a learned
    ranker, if any, that reads the features this version of shopper computes."""
    if not VERSION_PATTERN.fullmatch(model.version):
        raise ModelStoreError(
            f"model version {model.version!r} cannot be stored: use 1 to 128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    ranker = model.ranker
    try:
        json.dumps([model.metadata, None if ranker is None else ranker.metadata])
    except (TypeError, ValueError) as exc:
        raise ModelStoreError(
            f"model {model.version}: metadata must be JSON to be stored ({exc})"
        ) from None
    if ranker is not None and (error := ranker_mismatch(model.version, ranker.feature_names)):
        raise error


def ranker_mismatch(version: str, names: Sequence[str]) -> ModelStoreError | None:
    """The error for a learned ranker fitted on other features (names or order) than
    `FEATURE_NAMES`, the ones this version of shopper computes; None if they are those."""
    if tuple(names) == FEATURE_NAMES:
        return None
    gone = [n for n in names if n not in FEATURE_NAMES]
    new = [n for n in FEATURE_NAMES if n not in names]
    changes = []
    if gone:
        changes.append(f"no longer computed: {', '.join(gone)}")
    if new:
        changes.append(f"unknown to the ranker: {', '.join(new)}")
    return ModelStoreError(
        f"model {version}: its learned ranker was fitted on other features than this version "
        f"of shopper computes ({'; '.join(changes) or 'the same ones in another order'}); "
        "train a new model with this version"
    )


def trained_at_of(model_metadata: Mapping[str, Any], saved_at: float) -> float:
    """`ModelInfo.trained_at`: the trainer's `trained_at` if it wrote one, else `saved_at`."""
    trained_at = model_metadata.get("trained_at")
    if isinstance(trained_at, int | float) and not isinstance(trained_at, bool):
        return float(trained_at)
    return saved_at


def already_stored(version: str, where: str) -> ModelStoreError:
    return ModelStoreError(
        f"model version {version} is already stored in {where}; versions are immutable: "
        "save the new model under a new version"
    )


def unknown_version(version: str, known: Iterable[str], where: str) -> ModelStoreError:
    """The error for a version not stored, naming the newest ones that are."""
    names = list(known)
    if not names:
        return ModelStoreError(f"no model version {version!r} in {where}: no models are stored")
    shown = ", ".join(names[-SHOWN_VERSIONS:])
    more = f" (and {len(names) - SHOWN_VERSIONS} older)" if len(names) > SHOWN_VERSIONS else ""
    return ModelStoreError(
        f"no model version {version!r} in {where}; stored versions, oldest first: {shown}{more}"
    )
