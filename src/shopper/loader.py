"""`shopper load`: post a file of events or items to the API in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from shopper.errors import ShopperError
from shopper.formats import read_records

MAX_REJECTIONS_SHOWN = 20


def load_file(path: Path, api: str, batch: int = 500, items: bool = False) -> dict[str, Any]:
    """Post every record; returns counts and the first rejections with their reasons."""
    endpoint = "/v1/catalog/items" if items else "/v1/events"
    result: dict[str, Any] = {"sent": 0, "accepted": 0, "rejected": 0, "rejections": []}
    columns = (
        SpinnerColumn(),
        TextColumn("loading {task.fields[sent]} records"),
        TimeElapsedColumn(),
    )
    with httpx.Client(base_url=api, timeout=30.0) as http, Progress(*columns) as progress:
        task = progress.add_task("load", sent=0)
        chunk: list[Any] = []
        for record in read_records(path):
            chunk.append(record)
            if len(chunk) >= batch:
                _send(http, endpoint, chunk, result)
                progress.update(task, sent=result["sent"])
                chunk = []
        if chunk:
            _send(http, endpoint, chunk, result)
    return result


def _send(http: httpx.Client, endpoint: str, chunk: list[Any], result: dict[str, Any]) -> None:
    method = http.put if endpoint.endswith("items") else http.post
    try:
        response = method(endpoint, json=chunk)
    except httpx.TransportError as exc:
        raise ShopperError(f"cannot reach the shopper API at {http.base_url}: {exc}") from None
    if response.status_code not in (202, 422):
        raise ShopperError(f"{endpoint} answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    offset = result["sent"]
    result["sent"] += len(chunk)
    result["accepted"] += body["accepted"]
    result["rejected"] += len(body["rejected"])
    room = MAX_REJECTIONS_SHOWN - len(result["rejections"])
    for rejection in body["rejected"][: max(room, 0)]:
        result["rejections"].append({**rejection, "record": offset + rejection["index"]})
