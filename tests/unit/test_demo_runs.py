"""`shopper demo` runs in one data folder continue one history: each run's simulated events
have ids of their own, so the archive never holds one id at two times (the backfill would
keep the first run's copy and a second run's rows would differ from training's)."""

from __future__ import annotations

from shopper.demo.history import HistoryRecorder
from shopper.demo.simulator import ShopSimulator, SimulationParams


def event_ids(run: str) -> list[str]:
    recorder = HistoryRecorder()
    ShopSimulator(SimulationParams(shoppers=20, seed=7, run=run)).run(recorder)  # type: ignore[arg-type]
    return [e["event_id"] for e in recorder.raw if e["type"] != "item_upsert"]


def test_two_runs_of_one_seed_send_distinct_events() -> None:
    first, second = event_ids("aaaa"), event_ids("bbbb")
    assert len(first) == len(second) > 50  # the same shop, step by step...
    assert not set(first) & set(second)  # ...but other events
    assert first[0] == "sim-7-aaaa-1"


def test_without_a_run_the_ids_are_as_before() -> None:
    assert event_ids("")[:2] == ["sim-7-1", "sim-7-2"]
