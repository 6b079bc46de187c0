"""In-memory model store: the embedded mode's, and the tests' fake.

Models are kept as given, not copied: a saved model's arrays must not be changed after.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from shopper.domain.model import RankingModel
from shopper.ports.model_store import (
    ModelInfo,
    already_stored,
    check_storable,
    trained_at_of,
    unknown_version,
)

WHERE = "the in-memory model store"


class InMemoryModelStore:
    def __init__(self) -> None:
        self._models: dict[str, tuple[RankingModel, float]] = {}  # version -> (model, trained_at)
        self._promoted: str | None = None
        self._lock = threading.Lock()

    def save(self, model: RankingModel) -> str:
        check_storable(model)
        trained_at = trained_at_of(model.metadata, saved_at=time.time())
        with self._lock:
            if model.version in self._models:
                raise already_stored(model.version, WHERE)
            self._models[model.version] = (model, trained_at)
        return model.version

    def load(self, version: str) -> RankingModel:
        with self._lock:
            entry = self._models.get(version)
        if entry is None:
            raise unknown_version(version, [i.version for i in self.versions()], WHERE)
        return entry[0]

    def versions(self) -> list[ModelInfo]:
        with self._lock:
            entries = list(self._models.values())
            promoted = self._promoted
        infos = [
            ModelInfo(m.version, at, m.version == promoted, m.metadata, size_of(m))
            for m, at in entries
        ]
        return sorted(infos, key=lambda i: (i.trained_at, i.version))

    def promote(self, version: str) -> None:
        with self._lock:
            if version in self._models:
                self._promoted = version
                return
        raise unknown_version(version, [i.version for i in self.versions()], WHERE)

    def promoted(self) -> str | None:
        return self._promoted

    def load_promoted(self) -> RankingModel | None:
        version = self._promoted
        return None if version is None else self.load(version)

    def promoted_stamp(self) -> str | None:
        return self._promoted


def size_of(model: RankingModel) -> int:
    """The bytes of a model's arrays (what dominates its memory) and of its ranker's text."""
    arrays = [model.listed_at, model.has_behaviour, model.content.index, model.content.weight]
    arrays += list(model.popularity.segments.values())
    arrays += [a for n in model.neighbours.values() for a in (n.index, n.weight)]
    if model.factors is not None:
        arrays += [model.factors.items, model.factors.gram]
    h = model.histories
    arrays += [h.indptr, h.items, h.interest, h.bought, h.last_ts, h.interactions]
    ranker = len(model.ranker.text.encode()) if model.ranker is not None else 0
    return sum(int(np.asarray(a).nbytes) for a in arrays) + ranker
