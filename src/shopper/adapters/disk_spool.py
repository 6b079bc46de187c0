"""Records the broker never took, kept on disk until they can be sent again.

Each process appends to a file of its own in the spool folder and holds an exclusive
`flock` on it while it lives. A file nobody holds is an orphan: the records of a process
that stopped (or of this one, rotated out); any process of the deployment on that folder
may take and resend it. Records are framed with their length and a CRC, so a write torn
by a crash loses only itself, never the records before it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

SUFFIX = ".spool"
# topic length, key length, value length, CRC-32 of topic + key + value
_FRAME = struct.Struct(">HIII")


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    topic: str
    key: bytes
    value: bytes


class DiskSpool:
    """Append-only spool files under `folder`, at most `max_bytes` in this process's file
    (records beyond it are refused: `append` returns False)."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._size = 0

    def append(self, record: SpooledRecord) -> bool:
        topic = record.topic.encode()
        body = topic + record.key + record.value
        frame = _FRAME.pack(len(topic), len(record.key), len(record.value), zlib.crc32(body))
        with self._lock:
            if self._size + len(frame) + len(body) > self.max_bytes:
                return False
            out = self._own()
            out.write(frame + body)
            out.flush()  # to the OS at once: a crashed process leaves it behind
            self._size += len(frame) + len(body)
            return True

    def sync(self) -> None:
        """Make what was appended survive a machine crash too."""
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())

    def rotate(self) -> bool:
        """Let go of this process's file if it holds records (it becomes an orphan that
        `take_orphans` picks up); the next append starts a new one. True if it did."""
        with self._lock:
            if self._file is None or self._size == 0:
                return False
            self._release()
            return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._release()

    def take_orphans(self) -> Iterator[tuple[Path, list[SpooledRecord]]]:
        """Each orphan file with its records, locked while the caller handles it; the
        caller deletes it (`discard`) once its records are safe elsewhere."""
        if not self.folder.is_dir():
            return
        own = self._file.name if self._file is not None else None
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if str(path) == own:
                continue
            try:
                handle = path.open("rb")
            except FileNotFoundError:  # taken by another process meanwhile
                continue
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive, or another is resending it
                if not path.exists():
                    continue  # deleted by whoever held it before us
                yield path, _read(handle, path)
            finally:
                handle.close()

    @staticmethod
    def discard(path: Path) -> None:
        path.unlink(missing_ok=True)

    def _own(self) -> IO[bytes]:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            handle = path.open("ab")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file, self._size = handle, 0
        return self._file

    def _release(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        empty = self._size == 0
        name = self._file.name
        self._file.close()  # releases the lock
        if empty:
            Path(name).unlink(missing_ok=True)
        self._file, self._size = None, 0


def _read(handle: IO[bytes], path: Path) -> list[SpooledRecord]:
    data = handle.read()
    records, pos = [], 0
    while pos + _FRAME.size <= len(data):
        topic_len, key_len, value_len, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        end = start + topic_len + key_len + value_len
        body = data[start:end]
        if end > len(data) or zlib.crc32(body) != crc:
            break
        topic = body[:topic_len].decode()
        key = body[topic_len : topic_len + key_len]
        records.append(SpooledRecord(topic, key, body[topic_len + key_len :]))
        pos = end
    if pos != len(data):
        log.warning(
            "%s: %d bytes at the end are not a whole record (a write cut off by a crash); "
            "the %d records before them are kept",
            path,
            len(data) - pos,
            len(records),
        )
    return records
