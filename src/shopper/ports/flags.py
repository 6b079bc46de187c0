"""Flag evaluation: which experiment variant (and model) each shopper is routed to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shopper.domain.experiment import Experiment
from shopper.domain.recommendation import RecommendationList
from shopper.ports.cache import ListKey


@dataclass(frozen=True, slots=True)
class Assignment:
    variant: str
    model: str  # a model version, `promoted` or `baseline` (see domain.experiment)


class FlagClient(Protocol):
    """The one assignment the processor and the API share: a shopper's variant is a hash
    of their id under the current flag definition, the same in every process."""

    def assign(self, subject: str) -> Assignment:
        """The variant `subject` is routed to, and its model. Never raises: while the
        flags cannot be read, the last definition read (or the champion) answers."""
        ...

    def experiment(self) -> Experiment:
        """The definition now in force: routed variants with their shares, shadows."""
        ...

    def close(self) -> None: ...


class FlagEditor(Protocol):
    """Changes to the experiment's definition, and their log (who, what, why)."""

    def read(self) -> Experiment: ...

    def write(self, experiment: Experiment) -> None:
        """Replace the definition (checked first; served within seconds)."""
        ...

    def record(self, action: str, variant: str, reason: str, by: str) -> dict[str, Any]:
        """Log one change; returns the entry logged."""
        ...

    def changes(self, last: int) -> list[dict[str, Any]]:
        """The last logged changes, oldest first."""
        ...


class ListLog(Protocol):
    """Where shadow variants' lists are logged (never served: compared offline)."""

    def append(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None: ...

    def read(self) -> list[dict[str, Any]]: ...
