"""The simulated shop's past: what `shopper demo` trains its models on before the live run.

A shop trains on its archive, then serves; the demo does the same with a history drawn from
the same simulator (another seed: other sessions, the same catalog and shopper ids), spread
over the days before the run.
"""

from __future__ import annotations

import time
from typing import Any

from shopper.codec import parse_event
from shopper.demo.client import Shopper
from shopper.demo.simulator import ShopSimulator, SimulationParams
from shopper.domain.event import Event

HISTORY_DAYS = 7.0


class HistoryRecorder:
    """Takes the simulator's calls as a shop frontend would, keeping the events instead of
    posting them; pages get no recommendations."""

    def __init__(self) -> None:
        self.raw: list[dict[str, Any]] = []

    def upsert_items(self, items: list[dict[str, Any]], batch: int = 500) -> None:
        for item in items:
            event_id = f"history-item-{item['item_id']}"
            self.raw.append({"event_id": event_id, "type": "item_upsert", "ts": 0.0, "item": item})

    def post(self, events: list[dict[str, Any]]) -> None:
        self.raw.extend(events)

    def recommend(
        self, shopper: Shopper, context_item: str | None = None, k: int = 10
    ) -> dict[str, Any]:
        return {"items": [], "source": "popular", "variant": "", "list_id": ""}

    def events(self, end: float) -> list[Event]:
        """The recorded events, in order, spread evenly over the `HISTORY_DAYS` before `end`."""
        n = max(len(self.raw), 1)
        start = end - HISTORY_DAYS * 86_400.0
        return [
            parse_event({**raw, "ts": start + (end - start) * i / n}).to_domain()
            for i, raw in enumerate(self.raw)
        ]


def simulated_history(params: SimulationParams) -> list[Event]:
    """A past of the simulated shop: the same catalog and shopper ids, another seed."""
    recorder = HistoryRecorder()
    ShopSimulator(params).run(recorder)  # type: ignore[arg-type]
    return recorder.events(time.time() - 3600.0)
