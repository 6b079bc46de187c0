"""Lists as JSON lines, one file per writer, under one folder (shadow variants' lists)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopper.domain.recommendation import RecommendationList
from shopper.ports.cache import ListKey


class JsonlListLog:
    """Appends to `<folder>/lists-<id>.jsonl` (`at`, `subject`, `variant`, `list_id`,
    `model`, `tier`, `items` as [id, score] pairs); reads every file in the folder."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._file = folder / f"lists-{uuid.uuid4().hex[:12]}.jsonl"
        self._lock = threading.Lock()

    def append(self, lists: Sequence[tuple[ListKey, RecommendationList]]) -> None:
        if not lists:
            return
        lines = "".join(json.dumps(_entry(k, r), separators=(",", ":")) + "\n" for k, r in lists)
        with self._lock:
            self._folder.mkdir(parents=True, exist_ok=True)
            with self._file.open("a", encoding="utf-8") as fh:
                fh.write(lines)

    def read(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for path in sorted(self._folder.glob("lists-*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                entries.extend(json.loads(line) for line in fh if line.strip())
        return entries


def _entry(key: ListKey, ranked: RecommendationList) -> dict[str, Any]:
    return {
        "at": ranked.generated_at,
        "subject": key.subject,
        "variant": key.variant,
        "list_id": ranked.list_id,
        "model": ranked.model,
        "tier": ranked.tier,
        "items": [[s.item_id, s.score] for s in ranked.items],
    }
