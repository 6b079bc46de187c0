"""percentile, and the popularity segments a shopper falls back along."""

from __future__ import annotations

import pytest

from shopper.domain.segment import GLOBAL_SEGMENT, popularity_segments
from shopper.domain.stats import percentile


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 50) == 0.0


def test_segments_go_from_most_specific_to_global() -> None:
    assert popularity_segments("DE", "Mobile") == ["country:de", "device:mobile", GLOBAL_SEGMENT]
    assert popularity_segments(None, "desktop") == ["device:desktop", "global"]
    assert popularity_segments("fr", None) == ["country:fr", "global"]


def test_nothing_known_means_global_only() -> None:
    assert popularity_segments(None, None) == ["global"]
    assert popularity_segments("", "") == ["global"]
