"""One contract for every EventArchive: in memory and Parquet files by UTC day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shopper.adapters.memory_event_archive import InMemoryEventArchive
from shopper.adapters.parquet_event_archive import ParquetEventArchive
from shopper.domain.event import Event
from shopper.ports.event_archive import EventArchive
from tests.unit.factories import domain, wire


@pytest.fixture(params=["memory", "parquet"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> EventArchive:
    if request.param == "memory":
        return InMemoryEventArchive()
    return ParquetEventArchive(tmp_path / "archive", flush_events=3)


def every_kind() -> list[Event]:
    """Events that use every field, ids that need escaping, a sub-second time."""
    raws = [
        wire(
            "e-1",
            "click",
            user_id="u-ä",
            session_id="s,1",
            item_id='sku "1",ä',  # (control characters: refused by the codec)
            ts=1_569_888_000.123456,
            price=19.99,
            quantity=2,
            context={"device": "mobile", "country": "GB", "referrer": "mail", "page": "/p"},
            list_id="l-1",
            variant="champion",
            position=3,
        ),
        wire("e-2", "dwell", session_id="s-2", item_id="sku-2", dwell_ms=12_500),
        wire("e-3", "search", session_id="s-2", query="red shoes"),
        wire("e-4", "stock_change", item_id="sku-2", quantity=0),
        wire(
            "e-5",
            "item_upsert",
            item={
                "item_id": "sku-3",
                "title": "Mug",
                "category": "home > kitchen",
                "brand": "acme",
                "price": 4.5,
                "stock": 7,
                "attributes": {"colour": "blue"},
                "created_at": "2019-09-30T12:00:00+00:00",
            },
        ),
    ]
    return [domain(r) for r in raws]


def test_appended_events_read_back_whole(archive: EventArchive) -> None:
    events = every_kind()
    archive.append(events[:2])
    archive.append(events[2:])
    archive.flush()
    assert sorted(archive.read(), key=lambda e: e.event_id) == events


def test_nothing_is_lost_across_many_appends(archive: EventArchive) -> None:
    events = [domain(wire(f"e{n}", user_id="u", item_id="i", ts=1e9 + n)) for n in range(50)]
    for n in range(0, 50, 7):
        archive.append(events[n : n + 7])
    archive.flush()
    archive.flush()  # nothing left to write: writes nothing
    assert sorted(e.event_id for e in archive.read()) == sorted(e.event_id for e in events)


def test_parquet_files_are_partitioned_by_utc_day(tmp_path: Path) -> None:
    archive = ParquetEventArchive(tmp_path / "archive")
    midnight = datetime(2019, 10, 2, tzinfo=UTC)
    stamps = [
        midnight - timedelta(seconds=1),
        # 01:30 in UTC+2 is 23:30 UTC of the day before: the UTC day decides.
        (midnight - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2))),
        midnight,
    ]
    events = []
    for n, stamp in enumerate(stamps):
        raw = wire(f"e{n}", user_id="u", item_id="i")
        events.append(domain({**raw, "ts": stamp.isoformat()}))
    archive.append(events)
    assert list(archive.read()) == []  # buffered until flushed
    archive.flush()
    days = sorted(p.name for p in (tmp_path / "archive").iterdir())
    assert days == ["day=2019-10-01", "day=2019-10-02"]
    on_day = {
        day: sorted(
            event_id
            for f in (tmp_path / "archive" / day).glob("part-*.parquet")
            for event_id in pq.read_table(f).column("event_id").to_pylist()
        )
        for day in days
    }
    assert on_day == {"day=2019-10-01": ["e0", "e1"], "day=2019-10-02": ["e2"]}


def test_days_are_read_one_at_a_time_in_time_order(archive: EventArchive) -> None:
    """Appended out of order, across UTC midnights; each day whole, the days in order,
    and `size` counts every event (duplicates too) without reading them."""
    midnight = datetime(2019, 10, 2, tzinfo=UTC).timestamp()
    stamps = [midnight + 86_400 + 5, midnight - 1, midnight, midnight + 86_400 - 1, midnight - 1]
    events = [domain(wire(f"e{n}", user_id="u", item_id="i", ts=t)) for n, t in enumerate(stamps)]
    archive.append(events[:3])
    archive.append(events[3:])
    archive.flush()
    assert archive.size() == 5
    days = [sorted(e.event_id for e in day) for day in archive.read_days()]
    assert days == [["e1", "e4"], ["e2", "e3"], ["e0"]]
