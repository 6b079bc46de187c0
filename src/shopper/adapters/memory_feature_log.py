"""In-memory log of served feature rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shopper.domain.features.spec import FeatureRow


class InMemoryFeatureLog:
    def __init__(self) -> None:
        self._rows: list[FeatureRow] = []
        self._lock = threading.Lock()

    def append(self, rows: Sequence[FeatureRow]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def read(self) -> list[FeatureRow]:
        with self._lock:
            return list(self._rows)
