"""Reading events and items from JSON lines and CSV files (see docs/formats.md)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shopper.errors import ShopperError

INT_FIELDS = {"quantity", "dwell_ms", "position", "stock"}
FLOAT_FIELDS = {"price"}


class FormatError(ShopperError):
    pass


def read_records(path: Path) -> Iterator[dict[str, Any] | str]:
    """Records of a `.jsonl`/`.ndjson`/`.csv` file (optionally `.gz`), in file order.

    A line that is not valid JSON is yielded as its raw text, so the API rejects it with a
    reason and the good records beside it still go in."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    with _open(path) as fh:
        if kind in (".jsonl", ".ndjson", ".json"):
            yield from _json_lines(fh)
        elif kind == ".csv":
            yield from (csv_row_to_record(row) for row in csv.DictReader(fh))
        else:
            raise FormatError(f"{path}: unknown format; use .jsonl, .ndjson or .csv (maybe .gz)")


def csv_row_to_record(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row to the JSON shape: empty cells dropped, dotted columns nested."""
    record: dict[str, Any] = {}
    for column, cell in row.items():
        if cell is None or cell == "":
            continue
        parts = column.split(".")
        target = record
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _typed(parts[-1], cell)
    return record


def _typed(name: str, cell: str) -> Any:
    try:
        if name in INT_FIELDS:
            return int(cell)
        if name in FLOAT_FIELDS:
            return float(cell)
    except ValueError:
        return cell  # left as text: validation names the field and the problem
    return cell


def _json_lines(fh: IO[str]) -> Iterator[dict[str, Any] | str]:
    for line in fh:
        text = line.strip()
        if not text:
            continue
        try:
            yield json.loads(text)
        except json.JSONDecodeError:
            yield text


def _open(path: Path) -> IO[str]:
    if not path.exists():
        raise FormatError(f"{path} does not exist")
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")
