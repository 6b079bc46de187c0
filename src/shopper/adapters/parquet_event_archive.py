"""The event archive as Parquet files, partitioned by UTC day: `day=YYYY-MM-DD/part-*.parquet`.

Events are buffered and written in batches (a file per day per flush); a file appears
whole or not at all (written aside, then renamed), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopper.domain.event import Event, EventContext, EventType
from shopper.domain.item import Item
from shopper.errors import MissingExtra

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if (exc.name or "").partition(".")[0] != "pyarrow":
        raise
    raise MissingExtra("pyarrow", "feast") from None

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("ts", pa.float64()),  # epoch seconds, UTC: exact, whatever zone the shop wrote
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
        ("dwell_ms", pa.int64()),
        ("query", pa.string()),
        ("device", pa.string()),
        ("country", pa.string()),
        ("referrer", pa.string()),
        ("page", pa.string()),
        ("list_id", pa.string()),
        ("variant", pa.string()),
        ("position", pa.int64()),
        ("item", pa.string()),  # the catalog record of an item_upsert, as JSON
    ]
)
_CONTEXT = ("device", "country", "referrer", "page")
# A dict lookup, not `EventType(value)`: an enum call per event is a tenth of reading
# the archive back (the feature state's rebuild reads every event at start-up).
_TYPES = {t.value: t for t in EventType}


class ParquetEventArchive:
    def __init__(self, root: Path, flush_events: int = 5_000) -> None:
        self.root = root
        self._flush_events = flush_events
        self._buffer: list[Event] = []
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._buffer.extend(events)
            if len(self._buffer) >= self._flush_events:
                self._write_buffer()

    def flush(self) -> None:
        with self._lock:
            self._write_buffer()

    def read(self) -> Iterator[Event]:
        for day in self.read_days():
            yield from day

    def read_days(self) -> Iterator[list[Event]]:
        # `day=YYYY-MM-DD` sorts as the days do.
        for folder in sorted(self.root.glob("day=*")):
            paths = sorted(folder.glob("part-*.parquet"))
            if paths:
                yield [event_from_record(r) for p in paths for r in _records(p)]

    def size(self) -> int:
        paths = self.root.glob("day=*/part-*.parquet")
        return sum(pq.read_metadata(p).num_rows for p in paths)

    def _write_buffer(self) -> None:
        by_day: dict[str, list[dict[str, Any]]] = {}
        for event in self._buffer:
            by_day.setdefault(utc_day(event.ts), []).append(event_to_record(event))
        for day, records in sorted(by_day.items()):
            folder = self.root / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
            aside = folder / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), aside)
            os.replace(aside, folder / name)
        self._buffer = []


def _records(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path, schema=SCHEMA).to_pylist()  # type: ignore[no-any-return]


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def event_to_record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type.value,
        "ts": event.ts,
        "session_id": event.session_id,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "price": event.price,
        "quantity": event.quantity,
        "dwell_ms": event.dwell_ms,
        "query": event.query,
        "list_id": event.list_id,
        "variant": event.variant,
        "position": event.position,
        "item": json.dumps(asdict(event.item)) if event.item is not None else None,
    }
    record.update({name: getattr(event.context, name) for name in _CONTEXT})
    return record


def event_from_record(record: dict[str, Any]) -> Event:
    item = json.loads(record["item"]) if record["item"] is not None else None
    return Event(
        event_id=record["event_id"],
        type=_TYPES[record["type"]],
        ts=record["ts"],
        session_id=record["session_id"],
        user_id=record["user_id"],
        item_id=record["item_id"],
        price=record["price"],
        quantity=record["quantity"],
        dwell_ms=record["dwell_ms"],
        query=record["query"],
        context=EventContext(
            record["device"], record["country"], record["referrer"], record["page"]
        ),
        list_id=record["list_id"],
        variant=record["variant"],
        position=record["position"],
        item=Item(**{**item, "category": tuple(item["category"])}) if item else None,
    )
