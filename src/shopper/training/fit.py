"""Fitting every model of a `RankingModel` from `Interactions`.

Popularity (global and per segment, decayed), content (TF-IDF over the catalog's text),
EASE and item-kNN (item-item neighbours from co-purchases and co-views), and implicit ALS.
The settings come from `tuning`; nothing here is tuned for one data set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopper.domain.model import (
    DAY_S,
    Blend,
    Factors,
    Histories,
    ModelSettings,
    Neighbours,
    Popularity,
    RankingModel,
    Repurchase,
    decay,
)
from shopper.domain.segment import hour_segment
from shopper.domain.tier import DEFAULT_THRESHOLDS, Tier, TierThresholds
from shopper.training.data import Interactions

Progress = Callable[[str], None]
MIN_SEGMENT_EVENTS = 20

# Until tuned: each tier led by its own model.
DEFAULT_BLENDS: Mapping[Tier, Mapping[str, float]] = {
    Tier.ANONYMOUS: {"popularity": 1.0},
    Tier.FEW: {"content": 1.0, "popularity": 0.1},
    Tier.MANY: {"ease": 1.0, "itemknn": 0.5, "als": 1.0, "popularity": 0.1},
}


@dataclass(frozen=True)
class FitSettings:
    """Every model's settings (chosen by `tuning.tune`; these are its starting point)."""

    neighbours: int = 200
    interest_half_life_days: float = 30.0
    own_half_life_days: float = 30.0
    popularity_half_life_days: float = 14.0
    segment_weight: float = 1.0
    ease_lambda: float = 300.0
    ease_max_items: int = 20_000
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 10.0
    als_iterations: int = 15
    content_ngrams: int = 2
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_SETTINGS = FitSettings()


def fit(
    data: Interactions,
    settings: FitSettings = DEFAULT_SETTINGS,
    repurchase: Repurchase = Repurchase.EXCLUDE,
    thresholds: TierThresholds = DEFAULT_THRESHOLDS,
    new_item_hours: float = 72.0,
    version: str = "unversioned",
    progress: Progress | None = None,
    only: frozenset[str] | None = None,
) -> RankingModel:
    """Fit every model (or `only` the named ones) on all of `data`."""
    step = progress or (lambda _: None)
    wanted = only or frozenset({"popularity", "content", "ease", "itemknn", "als"})
    events = data.events
    as_of = float(events.ts.max()) if len(events) else 0.0
    item_ids = _item_index(data)
    index = pd.Index(item_ids)
    pairs = _pairs(events, index)
    subjects = pd.Index(sorted(events.subject.unique()))
    rows = subjects.get_indexer(pairs.subject)
    cols = pairs["col"].to_numpy()
    n_users, n_items = len(subjects), len(item_ids)
    binary = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    half_life = settings.interest_half_life_days * DAY_S
    # The same strength a shopper's profile has when served (`build_profile`).
    strength = np.log1p(pairs.interest.to_numpy()) * decay(
        as_of - pairs["last"].to_numpy(), half_life
    )
    weighted = sp.csr_matrix((strength.astype(np.float32), (rows, cols)), shape=binary.shape)
    empty = Neighbours.empty(n_items)
    step("popularity")
    popularity = _popularity(events, index, settings, as_of)
    step("content")
    content = _content(data.catalog, index, settings) if "content" in wanted else empty
    neighbours: dict[str, Neighbours] = {}
    if "ease" in wanted and n_items <= settings.ease_max_items:
        step("ease")
        neighbours["ease"] = _ease(binary, settings)
    if "itemknn" in wanted:
        step("itemknn")
        neighbours["itemknn"] = _itemknn(binary, settings)
    factors = None
    if "als" in wanted:
        step("als")
        factors = _als(weighted, settings)
    listed = data.catalog.set_index("item_id").listed_at.reindex(index).to_numpy(np.float64)
    first_seen = events.groupby("item_id").ts.min().reindex(index).to_numpy(np.float64)
    return RankingModel(
        version=version,
        item_ids=tuple(item_ids),
        listed_at=np.where(np.isnan(listed), first_seen, listed),
        has_behaviour=np.asarray(binary.sum(axis=0)).ravel() > 0,
        popularity=popularity,
        content=content,
        neighbours=neighbours,
        factors=factors,
        blends={t: Blend(dict(w)) for t, w in DEFAULT_BLENDS.items()},
        histories=_histories(events, pairs, subjects, rows),
        settings=ModelSettings(
            repurchase=repurchase,
            thresholds=thresholds,
            interest_half_life_s=half_life,
            own_half_life_s=settings.own_half_life_days * DAY_S,
            new_item_hours=new_item_hours,
        ),
        trained_until=as_of,
        metadata={"settings": settings.as_dict()},
    )


def _item_index(data: Interactions) -> list[str]:
    known = set(data.catalog.item_id.astype(str)) | set(data.events.item_id.astype(str))
    return sorted(known)


def _pairs(events: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    pairs = (
        events.groupby(["subject", "item_id"], sort=True)
        .agg(interest=("weight", "sum"), bought=("purchase", "sum"), last=("ts", "max"))
        .reset_index()
    )
    pairs["col"] = index.get_indexer(pairs.item_id)
    return pairs


def _histories(
    events: pd.DataFrame, pairs: pd.DataFrame, subjects: pd.Index, rows: np.ndarray
) -> Histories:
    counts = np.bincount(rows, minlength=len(subjects))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    interactions = events.groupby("subject").size().reindex(subjects).to_numpy(np.int32)
    # Each shopper's context as of their latest event (one event, not a mix of columns).
    latest = events.sort_values("ts").groupby("subject").tail(1).set_index("subject")
    latest = latest[["country", "device", "referrer"]].reindex(subjects)
    segments = tuple(
        tuple(
            f"{dim}:{str(v).lower()}"
            for dim, v in zip(latest.columns, row, strict=True)
            if isinstance(v, str) and v
        )
        for row in latest.itertuples(index=False)
    )
    return Histories(
        subjects={s: i for i, s in enumerate(subjects)},
        indptr=indptr,
        items=pairs["col"].to_numpy(np.int32),
        interest=pairs.interest.to_numpy(np.float32),
        bought=pairs.bought.to_numpy(np.float32),
        last_ts=pairs["last"].to_numpy(np.float64),
        interactions=interactions,
        segments=segments,
    )


def event_segments(events: pd.DataFrame) -> dict[str, pd.Series]:
    """Each event's segment per dimension (`country:gb`, ..., `hour:18-23`)."""
    out = {
        dim: (dim + ":" + events[dim].str.lower()).where(events[dim].notna())
        for dim in ("country", "device", "referrer")
    }
    hours = (events.ts // 3600 % 24).astype(int)
    labels = {h: hour_segment(h * 3600.0) for h in range(24)}
    out["hour"] = hours.map(labels)
    return out


def _popularity(
    events: pd.DataFrame, index: pd.Index, settings: FitSettings, as_of: float
) -> Popularity:
    """Distinct shoppers per item, each counted at their last interaction, decayed."""
    half_life = settings.popularity_half_life_days * DAY_S
    segs = {"global": pd.Series("global", index=events.index)} | event_segments(events)
    out: dict[str, np.ndarray] = {}
    for labels in segs.values():
        frame = events.assign(segment=labels).dropna(subset=["segment"])
        last = frame.groupby(["segment", "subject", "item_id"]).ts.max().reset_index()
        last["w"] = decay(as_of - last.ts.to_numpy(), half_life)
        for segment, group in last.groupby("segment"):
            if len(group) < MIN_SEGMENT_EVENTS and segment != "global":
                continue
            vec = np.zeros(len(index))
            np.add.at(vec, index.get_indexer(group.item_id), group.w.to_numpy())
            out[str(segment)] = vec / max(vec.max(), 1e-12)
    if "global" not in out:
        out["global"] = np.zeros(len(index))
    return Popularity(out, settings.segment_weight)


def _content(catalog: pd.DataFrame, index: pd.Index, settings: FitSettings) -> Neighbours:
    from sklearn.feature_extraction.text import TfidfVectorizer

    text = catalog.set_index("item_id").text.reindex(index).fillna("").to_numpy()
    if not any(t.strip() for t in text):
        return Neighbours.empty(len(index))
    try:
        vectors = TfidfVectorizer(
            ngram_range=(1, settings.content_ngrams), sublinear_tf=True, dtype=np.float32
        ).fit_transform(text)
    except ValueError:  # no word of two letters or more in the whole catalog
        return Neighbours.empty(len(index))
    return top_neighbours(lambda rows: (vectors[rows] @ vectors.T).toarray(), len(index),
                          settings.neighbours)  # fmt: skip


def _ease(binary: sp.csr_matrix, settings: FitSettings) -> Neighbours:
    """EASE (Steck 2019): a closed-form item-item model, B = I - P / diag(P)."""
    gram = (binary.T @ binary).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += settings.ease_lambda
    p = np.linalg.inv(gram)
    b = (-p / np.diag(p)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    return top_neighbours(lambda rows: b[rows], b.shape[0], settings.neighbours)


def _itemknn(binary: sp.csr_matrix, settings: FitSettings) -> Neighbours:
    """Cosine similarity of items' shopper columns."""
    counts = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    scale = sp.diags(1.0 / np.maximum(counts, 1e-12))
    normed = (binary @ scale).T.tocsr().astype(np.float32)
    return top_neighbours(lambda rows: (normed[rows] @ normed.T).toarray(), normed.shape[0],
                          settings.neighbours)  # fmt: skip


def _als(weighted: sp.csr_matrix, settings: FitSettings) -> Factors:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(
        factors=settings.als_factors,
        regularization=settings.als_regularization,
        alpha=settings.als_alpha,
        iterations=settings.als_iterations,
        random_state=settings.seed,
        use_gpu=False,
    )
    # implicit runs its own threads; a multi-threaded BLAS under them only oversubscribes
    # (implicit warns about it), so BLAS keeps to one thread while it fits.
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(weighted, show_progress=False)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return Factors(
        items=items,
        gram=items.T.astype(np.float64) @ items.astype(np.float64),
        regularization=settings.als_regularization,
        alpha=settings.als_alpha,
    )


def top_neighbours(
    similarity: Callable[[np.ndarray], np.ndarray], n_items: int, n: int, chunk: int = 512
) -> Neighbours:
    """The `n` most similar items per row of a similarity matrix given in row chunks
    (self-similarity and scores <= 0 left out)."""
    n = max(1, min(n, n_items - 1)) if n_items > 1 else 1
    index = np.full((n_items, n), -1, np.int32)
    weight = np.zeros((n_items, n), np.float32)
    for start in range(0, n_items, chunk):
        rows = np.arange(start, min(start + chunk, n_items))
        block = np.asarray(similarity(rows), dtype=np.float32)
        block[np.arange(len(rows)), rows] = 0.0
        if n_items <= 1:
            continue
        top = np.argpartition(-block, n - 1, axis=1)[:, :n]
        vals = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        keep = vals > 0
        index[rows] = np.where(keep, top, -1)
        weight[rows] = np.where(keep, vals, 0.0)
    return Neighbours(index, weight)
