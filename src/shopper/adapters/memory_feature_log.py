"""In-memory log of served feature rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shopper.ports.feature_store import ServedRow


class InMemoryFeatureLog:
    def __init__(self) -> None:
        self._rows: list[ServedRow] = []
        self._lock = threading.Lock()

    def append(self, rows: Sequence[ServedRow]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def read(self) -> list[ServedRow]:
        with self._lock:
            return list(self._rows)
