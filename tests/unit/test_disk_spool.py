"""The disk spool: what the broker never took waits in files until it is sent again."""

from __future__ import annotations

from pathlib import Path

from shopper.adapters.disk_spool import SUFFIX, DiskSpool, SpooledRecord


def records(n: int, tag: str = "") -> list[SpooledRecord]:
    return [
        SpooledRecord("t.events", f"u:{i}".encode(), f'{{"n": "{tag}{i}"}}'.encode())
        for i in range(n)
    ]


def test_records_of_a_stopped_process_are_taken_whole_and_in_order(tmp_path: Path) -> None:
    stopped = DiskSpool(tmp_path, max_bytes=1 << 20)
    sent = records(50)
    assert all(stopped.append(r) for r in sent)
    stopped.close()
    taker = DiskSpool(tmp_path, max_bytes=1 << 20)
    taken = list(taker.take_orphans())
    assert [recs for _, recs in taken] == [sent]
    for path, _ in taken:
        taker.discard(path)
    assert not list(tmp_path.glob(f"*{SUFFIX}"))
    assert list(taker.take_orphans()) == []


def test_a_living_process_keeps_its_file_until_it_rotates_it(tmp_path: Path) -> None:
    living = DiskSpool(tmp_path, max_bytes=1 << 20)
    living.append(records(1)[0])
    other = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert list(other.take_orphans()) == [], "taken from a process that is still writing it"
    assert list(living.take_orphans()) == [], "a process took its own open file"
    assert living.rotate()
    assert [recs for _, recs in other.take_orphans()] == [records(1)]
    living.append(records(2, tag="new")[1])  # goes to a new file
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2
    living.close()


def test_a_file_being_resent_is_not_taken_twice(tmp_path: Path) -> None:
    stopped = DiskSpool(tmp_path, max_bytes=1 << 20)
    stopped.append(records(1)[0])
    stopped.close()
    first, second = DiskSpool(tmp_path, 1 << 20), DiskSpool(tmp_path, 1 << 20)
    for path, _ in first.take_orphans():  # holds the file while it resends
        assert list(second.take_orphans()) == []
        first.discard(path)
    assert list(second.take_orphans()) == []


def test_a_torn_last_write_loses_only_itself(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    for r in records(3):
        spool.append(r)
    spool.close()
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    data = path.read_bytes()
    path.write_bytes(data + data[:20])  # a crash in the middle of a fourth record
    (taken,) = DiskSpool(tmp_path, 1 << 20).take_orphans()
    assert taken[1] == records(3)


def test_the_bound_refuses_what_does_not_fit(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=200)
    results = [spool.append(r) for r in records(10)]
    assert results[0] and not results[-1]
    kept = results.count(True)
    spool.close()
    (taken,) = DiskSpool(tmp_path, 1 << 20).take_orphans()
    assert taken[1] == records(10)[:kept]


def test_nothing_is_written_while_nothing_fails(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20)
    assert not spool.rotate()
    spool.close()
    assert not (tmp_path / "spool").exists()
