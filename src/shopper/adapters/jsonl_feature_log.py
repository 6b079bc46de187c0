"""Served feature rows as JSON lines, one file per writer, under one folder."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopper.domain.features.pair import SHOPPER_ITEM
from shopper.domain.features.spec import VIEWS, Dtype, FeatureRow, FeatureValue
from shopper.ports.feature_store import ServedRow


class JsonlFeatureLog:
    """Appends to `<folder>/served-<id>.jsonl`; reads every file in the folder. JSON
    keeps floats exactly (shortest round-trip repr), so logged values compare exactly."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._file = folder / f"served-{uuid.uuid4().hex[:12]}.jsonl"
        self._lock = threading.Lock()

    def append(self, rows: Sequence[ServedRow]) -> None:
        if not rows:
            return
        lines = "".join(json.dumps(_encode(r), separators=(",", ":")) + "\n" for r in rows)
        with self._lock:
            self._folder.mkdir(parents=True, exist_ok=True)
            with self._file.open("a", encoding="utf-8") as fh:
                fh.write(lines)

    def read(self) -> list[ServedRow]:
        rows: list[ServedRow] = []
        for path in sorted(self._folder.glob("served-*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                rows.extend(_decode(json.loads(line)) for line in fh if line.strip())
        return rows


def _encode(served: ServedRow) -> dict[str, Any]:
    row = served.row
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in row.values.items()}
    return {
        "view": row.view,
        "entity_id": row.entity_id,
        "as_of": row.as_of,
        "values": values,
        "events_seen": served.events_seen,
        **({"incomplete": served.incomplete} if served.incomplete else {}),
    }


def _decode(data: dict[str, Any]) -> ServedRow:
    spec = SHOPPER_ITEM if data["view"] == SHOPPER_ITEM.name else VIEWS[data["view"]]
    types = {f.name: f.dtype for f in spec.features}
    values: dict[str, FeatureValue] = {}
    for name, value in data["values"].items():
        dtype = types.get(name)
        if dtype is Dtype.STRING_LIST and value is not None:
            value = tuple(value)
        elif dtype is Dtype.FLOAT64 and value is not None:
            value = float(value)
        values[name] = value
    row = FeatureRow(data["view"], data["entity_id"], float(data["as_of"]), values)
    # Both absent in logs of older versions; `incomplete` too when the state was complete.
    return ServedRow(row, data.get("events_seen"), data.get("incomplete"))
