"""Ranking hands the GIL to page reads only where pages are served in the process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shopper.domain.session import SessionState
from shopper.services import ranking
from shopper.services.priority import PAGES_SERVED_HERE


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    calls: list[float] = []
    monkeypatch.setattr(ranking, "YIELD_EVERY_S", -1.0)  # due before every session
    monkeypatch.setattr(ranking.time, "sleep", calls.append)
    was_set = PAGES_SERVED_HERE.is_set()
    yield calls
    if was_set:
        PAGES_SERVED_HERE.set()
    else:
        PAGES_SERVED_HERE.clear()


def sessions(n: int) -> list[SessionState]:
    return [SessionState(subject=f"u:{i}") for i in range(n)]


def test_without_pages_here_ranking_never_hands_the_gil_over(sleeps: list[float]) -> None:
    PAGES_SERVED_HERE.clear()
    batch = sessions(5)
    assert list(ranking._yielding(batch)) == batch
    assert sleeps == []


def test_with_pages_here_ranking_hands_it_over_between_shoppers(sleeps: list[float]) -> None:
    PAGES_SERVED_HERE.set()
    batch = sessions(5)
    assert list(ranking._yielding(batch)) == batch
    assert sleeps == [0, 0, 0, 0, 0]
