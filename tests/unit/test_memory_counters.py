"""`Counters`: sums by key in place, for the embedded mode's decayed counts."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from shopper.adapters.memory_counters import Counters


def test_sums_start_from_zero_and_add_up() -> None:
    counts = Counters()
    assert counts.add("a", 1.5) is True
    assert counts.add("a", 2.0) is False
    assert counts.add("b", 0.25) is True
    assert counts.get("a") == 3.5
    assert counts.get("b") == 0.25
    assert counts.get("missing") == 0.0
    assert counts.get("missing", -1.0) == -1.0
    assert dict(counts.items()) == {"a": 3.5, "b": 0.25}
    assert sorted(counts) == ["a", "b"]
    assert len(counts) == 2 and "a" in counts and "c" not in counts


def test_a_dropped_key_is_forgotten_and_its_slot_reused_from_zero() -> None:
    counts = Counters()
    counts.add("a", 1.0)
    counts.add("b", 2.0)
    assert counts.pop("a") == 1.0
    assert counts.pop("a") is None
    assert "a" not in counts and counts.get("a") == 0.0
    counts.add("c", 5.0)  # takes a's slot: it must not start from a's sum
    assert dict(counts.items()) == {"b": 2.0, "c": 5.0}
    assert counts.add("a", 1.0) is True
    assert dict(counts.items()) == {"b": 2.0, "c": 5.0, "a": 1.0}


def test_scaling_multiplies_every_sum() -> None:
    counts = Counters()
    counts.scale(2.0)  # nothing counted: nothing to do
    for key, amount in {"a": 1.0, "b": 3.0, "c": 0.5}.items():
        counts.add(key, amount)
    counts.scale(0.5)
    assert dict(counts.items()) == pytest.approx({"a": 0.5, "b": 1.5, "c": 0.25})
    counts.add("d", 1.0)  # the array still grows after a scale
    assert counts.get("d") == 1.0


def test_adding_to_a_counted_key_leaves_no_object_behind() -> None:
    """A dict of floats keeps a float born at each addition; after a burst those few
    hundred objects pin the burst's memory. Here nothing is made."""
    counts = Counters()
    keys = [f"item-{n}" for n in range(200)]
    for key in keys:
        counts.add(key, 1.0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(50):
            for key in keys:
                counts.add(key, 0.5)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    here = [tracemalloc.Filter(True, __file__), tracemalloc.Filter(True, "*memory_counters.py")]
    kept = sum(
        max(diff.count_diff, 0)
        for diff in after.filter_traces(here).compare_to(before.filter_traces(here), "lineno")
    )
    assert kept < 10, f"{kept} objects left by 10,000 additions"
    assert counts.get("item-7") == 26.0
