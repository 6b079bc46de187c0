"""Who changed the experiment, and why: a JSON-lines log beside the flag file
(`flags.json.log.jsonl`), one object per change: `at` (UTC, ISO 8601), `action`,
`variant`, `reason`, `by`, and for a ramp `percent`. The CLI writes it; a guardrail that
kills a variant records itself the same way."""

from __future__ import annotations

import json
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SUFFIX = ".log.jsonl"


def audit_path(flags_path: Path) -> Path:
    return flags_path.with_name(flags_path.name + SUFFIX)


def record_change(
    flags_path: Path,
    action: str,
    variant: str | None,
    reason: str,
    *,
    by: str | None = None,
    percent: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Append one change of the flag file at `flags_path` to its log; return the entry."""
    entry: dict[str, Any] = {
        "at": (at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "action": action,
        "variant": variant,
        "reason": reason,
        "by": by,
    }
    if percent is not None:
        entry["percent"] = percent
    path = audit_path(flags_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent writers do not interleave.
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry


def recent_changes(flags_path: Path, last: int = 10) -> list[dict[str, Any]]:
    """The last `last` entries of the log, oldest first; lines that are not JSON objects
    are skipped, and a missing log has none."""
    try:
        with audit_path(flags_path).open(encoding="utf-8") as fh:
            lines = deque(fh, maxlen=last * 2)  # room for a few bad lines
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries[-last:] if last > 0 else []
