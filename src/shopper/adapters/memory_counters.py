"""Sums by key whose additions allocate nothing: the embedded mode's decayed counters."""

from __future__ import annotations

from array import array
from collections.abc import Iterator

import numpy as np


class Counters:
    """key -> a float sum, every sum in one `array('d')` slot.

    In a dict of floats each addition makes a new float object, so after a burst of events
    the last value of each counter is an object born in the burst: a few hundred of them,
    spread over the burst's small-object arenas, keep those arenas (1 MiB each) from going
    back to the system when the burst's sessions expire. Here an addition writes eight
    bytes in place; a key's slot is made once, when it is first counted, and reused after
    the key is dropped."""

    __slots__ = ("_free", "_slots", "_sums")

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self._sums = array("d")
        self._free: list[int] = []

    def add(self, key: str, amount: float) -> bool:
        """Add `amount` to `key`'s sum (from 0.0 for a key not counted); returns whether
        the key is new."""
        slot = self._slots.get(key)
        if slot is not None:
            self._sums[slot] += amount
            return False
        if self._free:
            slot = self._free.pop()
            self._sums[slot] = amount
        else:
            slot = len(self._sums)
            self._sums.append(amount)
        self._slots[key] = slot
        return True

    def get(self, key: str, default: float = 0.0) -> float:
        slot = self._slots.get(key)
        return default if slot is None else self._sums[slot]

    def pop(self, key: str) -> float | None:
        """Drop `key`; returns its sum, or None if it was not counted."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return None
        self._free.append(slot)
        return self._sums[slot]

    def items(self) -> Iterator[tuple[str, float]]:
        sums = self._sums
        return ((key, sums[slot]) for key, slot in self._slots.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def scale(self, factor: float) -> None:
        """Multiply every sum by `factor`, in place."""
        if self._sums:
            view = np.frombuffer(self._sums, dtype=np.float64)
            view *= factor

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots
