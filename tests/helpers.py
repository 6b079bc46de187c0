"""Small builders shared by the HTTP-level tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def view(event_id: str, item: str, **who: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "view", "ts": now_iso(), "item_id": item, **who}


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]
