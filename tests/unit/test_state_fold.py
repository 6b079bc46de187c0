"""Folding a micro-batch into state: short transactions, sent together, each holding its
sessions as of its own last event."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from shopper.adapters.memory_processor_state import InMemoryProcessorState
from shopper.ports.event_log import Record
from shopper.ports.processor_state import StateChanges
from shopper.services.processor import collection_paused
from shopper.services.processor_stats import ProcessorStats
from shopper.services.state_fold import StateFold
from tests.unit.factories import domain, view, wire


class RecordingState(InMemoryProcessorState):
    """Notes each `apply_all` call: per transaction, its event ids and its sessions'
    interaction counts as they are when sent."""

    def __init__(self) -> None:
        super().__init__(half_life_s=3600.0)
        self.calls: list[list[tuple[list[str], dict[str, int]]]] = []

    def apply_all(self, transactions: Sequence[StateChanges]) -> None:
        self.calls.append(
            [
                # The event ids, each key's shopper scope (`Event.dedup_key`) cut off.
                (
                    [key.partition("\x1f")[2] for key in t.event_ids],
                    {s: st.interactions for s, st in t.sessions.items()},
                )
                for t in transactions
            ]
        )
        super().apply_all(transactions)


def fold(
    state: RecordingState, *raws: dict[str, Any], transaction_events: int = 3
) -> ProcessorStats:
    stats = ProcessorStats()
    folder = StateFold(state, stats, transaction_events, lambda *_: None)
    folder.fold([(record(n), domain(raw)) for n, raw in enumerate(raws)])
    return stats


def record(offset: int) -> Record:
    return Record("events", 0, offset, "", b"", 0.0)


def test_a_batch_is_sent_once_in_transactions_of_transaction_events() -> None:
    state = RecordingState()
    fold(state, *(view(f"e{n}", f"shopper{n}", "a") for n in range(7)))
    (call,) = state.calls
    assert [ids for ids, _ in call] == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]


def test_a_queued_session_is_sent_before_it_changes_again() -> None:
    state = RecordingState()
    events = [view("e0", "me", "a"), view("e1", "x", "a"), view("e2", "y", "a")]
    events += [view("e3", "z", "b"), view("e4", "me", "b")]
    fold(state, *events)
    first, second = state.calls
    # The first transaction holds "me" after one event, and went out before the second.
    assert first == [(["e0", "e1", "e2"], {"u:me": 1, "u:x": 1, "u:y": 1})]
    assert second == [(["e3", "e4"], {"u:z": 1, "u:me": 2})]
    assert state.sessions(["u:me"])["u:me"].interactions == 2


def test_no_session_is_in_two_transactions_of_one_call() -> None:
    state = RecordingState()
    shoppers = ["a", "b", "c", "a", "d", "e", "b", "f", "a", "g"]
    fold(state, *(view(f"e{n}", s, "i") for n, s in enumerate(shoppers)), transaction_events=2)
    for call in state.calls:
        held = [s for _, sessions in call for s in sessions]
        assert len(held) == len(set(held))
    counts = {s: st.interactions for s, st in state.sessions(["u:a", "u:b", "u:g"]).items()}
    assert counts == {"u:a": 3, "u:b": 2, "u:g": 1}


def test_applied_and_impressions_are_counted_once_sent() -> None:
    state = RecordingState()
    impression = wire("i1", "impression", user_id="me", list_id="l1", variant="champion")
    stats = fold(state, view("e1", "me", "a"), impression, view("e1", "me", "a"))
    assert (stats.applied, stats.impressions) == (2, 1)  # the redelivered view: neither


def test_the_collector_is_paused_inside_and_left_as_found() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # someone else paused it: theirs to resume
    finally:
        gc.enable()
