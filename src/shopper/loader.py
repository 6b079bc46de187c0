"""`shopper load`: post a file of events or items, or a shipped data set, to the API in
batches. Progress goes to stderr: stdout carries the one JSON result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from shopper.demo.datasets import Row, find_dataset
from shopper.domain.event import CATALOG_TYPES
from shopper.errors import ShopperError
from shopper.formats import read_records

MAX_REJECTIONS_SHOWN = 20
CATALOG_TYPE_NAMES = frozenset(t.value for t in CATALOG_TYPES)

Tick = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Keys:
    """What `shopper load` sends: the admin token with catalog records (items, and
    batches holding catalog events), the ingest key (else the admin token) with the rest."""

    admin_token: str | None = None
    ingest_key: str | None = None

    def headers(self, endpoint: str, chunk: list[Any]) -> dict[str, str]:
        catalog = endpoint.endswith("items") or any(
            isinstance(r, dict) and str(r.get("type")) in CATALOG_TYPE_NAMES for r in chunk
        )
        key = self.admin_token if catalog else (self.ingest_key or self.admin_token)
        return {"authorization": f"Bearer {key}"} if key else {}


def load_file(
    path: Path, api: str, batch: int = 500, items: bool = False, keys: Keys = Keys()
) -> dict[str, Any]:
    """Post every record; returns counts and the first rejections with their reasons."""
    endpoint = "/v1/catalog/items" if items else "/v1/events"
    with _client(api) as http, _progress("records") as tick:
        return _post_all(http, endpoint, read_records(path), batch, tick, keys)


def load_dataset(
    path: Path,
    api: str,
    batch: int = 500,
    max_events: int | None = None,
    keys: Keys = Keys(),
) -> dict[str, Any]:
    """Post a shipped data set folder: first its catalog (one `item_upsert` event an item,
    dated at the item's first appearance), then its first `max_events` events in file order.
    No sell-outs are simulated: that is the demo's. Returns counts for items and events."""
    dataset = find_dataset(path)
    read = 0

    def counted(rows: Iterable[Row]) -> Iterator[Row]:
        nonlocal read
        for row in rows:
            read += 1
            yield row

    # Two passes over the files rather than all rows in memory: the catalog must go first,
    # and the whole UCI data set as dicts is several hundred megabytes.
    catalog = dataset.catalog(counted(dataset.rows(max_events)))
    with _client(api) as http:
        with _progress("items", len(catalog)) as tick:
            items = _post_all(http, "/v1/events", catalog, batch, tick, keys)
        with _progress("events", read) as tick:
            events = dataset.events(dataset.rows(max_events))
            sent = _post_all(http, "/v1/events", events, batch, tick, keys)
    return {"dataset": dataset.name, "items": items, "events": sent}


def _client(api: str) -> httpx.Client:
    return httpx.Client(base_url=api, timeout=30.0)


@contextmanager
def _progress(what: str, total: int | None = None) -> Iterator[Tick]:
    of = f"/{total}" if total is not None else ""
    columns = (
        SpinnerColumn(),
        TextColumn(f"loading {{task.completed}}{of} {what}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def _post_all(
    http: httpx.Client, endpoint: str, records: Iterable[Any], batch: int, tick: Tick, keys: Keys
) -> dict[str, Any]:
    result: dict[str, Any] = {"sent": 0, "accepted": 0, "rejected": 0, "rejections": []}
    chunk: list[Any] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= batch:
            _send(http, endpoint, chunk, result, keys)
            tick(len(chunk))
            chunk = []
    if chunk:
        _send(http, endpoint, chunk, result, keys)
        tick(len(chunk))
    return result


def _send(
    http: httpx.Client, endpoint: str, chunk: list[Any], result: dict[str, Any], keys: Keys
) -> None:
    method = http.put if endpoint.endswith("items") else http.post
    try:
        response = method(endpoint, json=chunk, headers=keys.headers(endpoint, chunk))
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
