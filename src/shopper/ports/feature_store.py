"""The feature store: online rows for serving, offline rows for training, one definition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shopper.domain.event import Event
from shopper.domain.features.spec import FeatureRow

# (entity id, epoch seconds): "this entity's features as they were at this time"
PointInTime = tuple[str, float]


class FeatureStore(Protocol):
    def push(self, rows: Sequence[FeatureRow]) -> None:
        """Write rows to the online store; the last write of an entity's view wins."""
        ...

    def read_user(self, user_id: str) -> dict[str, FeatureRow]:
        """The online rows of every user view for one shopper, by view name; views with
        no row are left out."""
        ...

    def read_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, FeatureRow]]:
        """`read_user` for many shoppers in one read (the learned ranker's micro-batch);
        shoppers with no row at all are left out."""
        ...

    def read_items(self, item_ids: Sequence[str]) -> dict[str, FeatureRow]:
        """The online `product_stats` rows of these items, by item id; unknown left out."""
        ...

    def replace_offline(self, view: str, rows: Sequence[FeatureRow]) -> None:
        """Make `rows` the whole offline history of `view` (the backfill recomputes it)."""
        ...

    def historical(self, view: str, requests: Sequence[PointInTime]) -> list[FeatureRow | None]:
        """Point-in-time rows, one per request in order: the offline row of the entity
        with the latest `as_of` at or before the request's time, and not older than the
        view's TTL; None when there is none. Nothing after the request's time is used."""
        ...

    def close(self) -> None: ...


class FeatureSink(Protocol):
    """What the stream processor hands each micro-batch's applied events to."""

    def observe(self, events: Sequence[Event]) -> None:
        """Take the events; must not block for long nor raise: features never hold up
        the lists."""
        ...


# Why a served row may lack history (`ServedRow.incomplete` starts with it): the engine
# that computed it could not rebuild its state from the archive at start-up.
BEFORE_REBUILD = "before_rebuild"


@dataclass(frozen=True, slots=True)
class ServedRow:
    """A feature row as the online path served it, with how many of the entity's events
    it was computed from (those inside the view's horizon up to the row's time; None if
    not known). Fewer than training counts for that time means events arrived late.
    `incomplete` says why the engine's state lacked history when it computed the row
    (None: it was complete), so the skew check can tell such rows from real skew."""

    row: FeatureRow
    events_seen: int | None = None
    incomplete: str | None = None


class FeatureLog(Protocol):
    """Feature rows the online path served (sampled), for the skew check."""

    def append(self, rows: Sequence[ServedRow]) -> None: ...

    def read(self) -> list[ServedRow]:
        """Every row logged, in the order each writer wrote them."""
        ...
