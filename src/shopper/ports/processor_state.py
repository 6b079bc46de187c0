"""What the stream processor remembers between events: sessions, catalog, counters."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shopper.domain.attribution import OutcomeDelta
from shopper.domain.experiment_stats import SessionOutcome
from shopper.domain.item import Item
from shopper.domain.session import SessionState


@dataclass(slots=True)
class StateChanges:
    """Everything one micro-batch changes; applied atomically with its event ids."""

    event_ids: list[str] = field(default_factory=list)  # each `Event.dedup_key`
    sessions: dict[str, SessionState] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    # (segment, item_id, weight, ts): one interest hit for decayed popularity
    hits: list[tuple[str, str, float, float]] = field(default_factory=list)
    # (item_a, item_b, weight): both directions are counted by the store
    co_occurrences: list[tuple[str, str, float]] = field(default_factory=list)
    # session -> what this batch adds to its experiment outcome (domain.attribution)
    outcomes: dict[str, OutcomeDelta] = field(default_factory=dict)
    # Items the catalog does not list whose counts (hits, volume, co-occurrence) this
    # batch touches, in the order seen. The state keeps the counts of the `unlisted_cap`
    # most recently seen such items (for when the catalog lists them) and forgets the
    # rest's, so no client grows it without bound; a listed item is never forgotten.
    unlisted: dict[str, None] = field(default_factory=dict)


# Items the catalog does not list whose counts a state keeps at most (StateChanges.unlisted).
UNLISTED_CAP = 10_000


class ProcessorState(Protocol):
    def applied(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these events were already applied (so a redelivery changes nothing)."""
        ...

    def sessions(self, subjects: Iterable[str]) -> dict[str, SessionState]:
        """Stored sessions; subjects never seen get a fresh state."""
        ...

    def items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """Known catalog items among `item_ids`."""
        ...

    def apply(self, changes: StateChanges) -> None:
        """One transaction: the changes and their event ids land together or not at all."""
        ...

    def apply_all(self, transactions: Sequence[StateChanges]) -> None:
        """Each of `transactions` as one `apply`, in order, in one round trip where it
        matters. They must carry no session twice: sessions are stored whole, so a later
        transaction holding a session would carry the effects of an earlier one that may
        not have landed."""
        ...

    def popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        """Top `n` items of a segment by decayed interest, best first."""
        ...

    def neighbours(self, item_id: str, n: int) -> list[tuple[str, float]]:
        """Items most often interacted with alongside `item_id`, by cosine similarity."""
        ...

    def neighbours_many(
        self, item_ids: Collection[str], n: int
    ) -> dict[str, list[tuple[str, float]]]:
        """`neighbours` of several items at once (one round trip where it matters)."""
        ...

    def outcomes(self) -> list[SessionOutcome]:
        """Every session shown a list (its variant known), with what it did since; kept
        as long as sessions are."""
        ...

    def publish_report(self, report: dict[str, Any]) -> None:
        """Keep the experiment report computed from `outcomes()`, for processes that do
        not compute it (API replicas: its resampling would hold up their pages)."""
        ...

    def published_report(self) -> dict[str, Any] | None:
        """The last report published (None: none yet, or it expired)."""
        ...
