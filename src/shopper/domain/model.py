"""A trained ranking model: the candidates and scores the trainer computed offline.

Pure data plus the arithmetic that reads it (numpy only): the trainer fills it, the
processor and `shopper evaluate` score shoppers with it through `domain.recommender`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shopper.domain.tier import DEFAULT_THRESHOLDS, Tier, TierThresholds

if TYPE_CHECKING:
    from shopper.domain.learned import LearnedRanker

Vector = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]

DAY_S = 86_400.0


class Repurchase(StrEnum):
    """What a shop wants done with what a shopper already bought."""

    EXCLUDE = "exclude"  # durable goods: never recommend it again
    ALLOW = "allow"  # consumables, wholesale: their own purchases may come back


# The scores a tier's blend can weigh. `own` is the shopper's own purchase history
# (only with Repurchase.ALLOW).
COMPONENTS = ("popularity", "content", "ease", "itemknn", "als", "own")
COLLABORATIVE = ("ease", "itemknn", "als")


# eq=False: numpy arrays have no single truth value; compare fields instead.
@dataclass(frozen=True, slots=True, eq=False)
class Neighbours:
    """The top-N most similar items of each item, -1 padded: a precomputed candidate set."""

    index: IntArray  # (n_items, N)
    weight: FloatArray  # (n_items, N)

    @classmethod
    def empty(cls, n_items: int) -> Neighbours:
        """No neighbours for any item (a model that could not be fitted)."""
        return cls(np.full((n_items, 1), -1, np.int32), np.zeros((n_items, 1), np.float32))

    def spread(self, items: IntArray, strengths: Vector, n_items: int) -> Vector:
        """Sum over the given items of their neighbours' similarity times the item's strength."""
        if len(items) == 0:
            return np.zeros(n_items)
        idx = self.index[items]
        weights = self.weight[items] * strengths[:, None]
        mask = idx >= 0
        return np.bincount(idx[mask], weights=weights[mask], minlength=n_items).astype(np.float64)

    def of(self, item: int, n: int) -> list[tuple[int, float]]:
        """One item's neighbours, best first."""
        row = [(int(j), float(w)) for j, w in zip(self.index[item], self.weight[item], strict=True)]
        return [(j, w) for j, w in row if j >= 0 and w > 0][:n]


# eq=False: numpy arrays have no single truth value; compare fields instead.
@dataclass(frozen=True, slots=True, eq=False)
class Factors:
    """Implicit-feedback matrix factorisation (ALS): item factors and what folding a
    shopper in needs, so a shopper's vector comes from their current history, not a stale
    training snapshot. Confidence of an interaction: `alpha * strength`."""

    items: FloatArray  # (n_items, f)
    gram: npt.NDArray[np.float64]  # items.T @ items
    regularization: float
    alpha: float

    def fold_in(self, items: IntArray, strengths: Vector) -> Vector:
        """The least-squares user vector for this history (one ALS user step)."""
        f = self.items.shape[1]
        if len(items) == 0:
            return np.zeros(f)
        y = self.items[items].astype(np.float64)
        confidence = self.alpha * strengths
        a = self.gram + (y.T * (confidence - 1.0)) @ y + self.regularization * np.eye(f)
        return np.asarray(np.linalg.solve(a, y.T @ confidence), dtype=np.float64)

    def scores(self, items: IntArray, strengths: Vector) -> Vector:
        return np.asarray(self.items @ self.fold_in(items, strengths), dtype=np.float64)


# eq=False: numpy arrays have no single truth value; compare fields instead.
@dataclass(frozen=True, slots=True, eq=False)
class Popularity:
    """Time-decayed popularity as of training, globally and per segment (`country:gb`,
    `device:mobile`, `referrer:email`, `hour:18-23`), each scaled to a maximum of 1."""

    segments: Mapping[str, Vector]
    segment_weight: float = 1.0

    def scores(self, segments: Sequence[str]) -> Vector:
        """Global popularity plus `segment_weight` times each known segment's."""
        total = np.array(self.segments["global"], dtype=np.float64)
        for segment in segments:
            if segment != "global" and segment in self.segments:
                total = total + self.segment_weight * self.segments[segment]
        return total


@dataclass(frozen=True, slots=True)
class Blend:
    """A tier's weights per component score (each score is scaled to a maximum of 1)."""

    weights: Mapping[str, float]

    def active(self) -> list[tuple[str, float]]:
        return [(name, w) for name, w in self.weights.items() if w > 0]


# eq=False: numpy arrays have no single truth value; compare fields instead.
@dataclass(frozen=True, slots=True, eq=False)
class Histories:
    """What each trained shopper did before the model's data ended, as CSR rows:
    per (shopper, item) the summed interest, purchases, and the last time."""

    subjects: Mapping[str, int]
    indptr: npt.NDArray[np.int64]
    items: IntArray
    interest: FloatArray
    bought: FloatArray
    last_ts: npt.NDArray[np.float64]
    interactions: npt.NDArray[np.int32]  # events per shopper
    segments: tuple[tuple[str, ...], ...] = ()  # per shopper, e.g. ("country:gb",)

    def row(self, subject: str) -> slice | None:
        i = self.subjects.get(subject)
        if i is None:
            return None
        return slice(int(self.indptr[i]), int(self.indptr[i + 1]))


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How profiles are built and lists filtered; fixed at training, tuned where marked."""

    repurchase: Repurchase = Repurchase.EXCLUDE
    thresholds: TierThresholds = DEFAULT_THRESHOLDS
    interest_half_life_s: float = 30 * DAY_S  # tuned
    own_half_life_s: float = 30 * DAY_S  # tuned
    new_item_hours: float = 72.0


# eq=False: numpy arrays have no single truth value; compare fields instead.
@dataclass(frozen=True, slots=True, eq=False)
class RankingModel:
    """Everything the trainer fitted, indexed by item position in `item_ids`."""

    version: str
    item_ids: tuple[str, ...]
    listed_at: Vector  # when each item was first listed or seen (NaN: unknown)
    has_behaviour: npt.NDArray[np.bool_]  # it had shopper events in the training data
    popularity: Popularity
    content: Neighbours
    neighbours: Mapping[str, Neighbours]  # "ease", "itemknn"
    factors: Factors | None
    blends: Mapping[Tier, Blend]
    histories: Histories
    settings: ModelSettings = ModelSettings()
    trained_until: float = 0.0  # the newest event the model saw
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Re-ranks each shopper's candidates from the feature store's rows (None: the blends'
    # order is served).
    ranker: LearnedRanker | None = None
    index: Mapping[str, int] = field(init=False, repr=False)  # item id -> position

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {item: i for i, item in enumerate(self.item_ids)})

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def with_blends(self, blends: Mapping[Tier, Blend], **metadata: Any) -> RankingModel:
        return replace(self, blends=dict(blends), metadata={**self.metadata, **metadata})


def decay(age_s: Vector | float, half_life_s: float) -> Any:
    """How much a signal `age_s` old still counts, halving every `half_life_s`."""
    if isinstance(age_s, float | int):  # one age: math, not numpy's per-call overhead
        return math.exp(-_LN2 * max(age_s, 0.0) / half_life_s)
    return np.exp(-_LN2 * np.maximum(age_s, 0.0) / half_life_s)


_LN2 = math.log(2)


def scaled(scores: Vector) -> Vector:
    """Scores over 0 divided by their maximum; the rest 0 (a negative score never shows)."""
    top = float(scores.max(initial=0.0))
    if top <= 0:
        return np.zeros_like(scores)
    return np.maximum(scores, 0.0) / top
