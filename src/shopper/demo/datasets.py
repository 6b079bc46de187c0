"""The shipped data sets: their rows as canonical events and catalog items (which `shopper
load` posts as they are), and their replays through the demo's shop frontend.

Neither data set has stock, so the replays simulate sell-outs the way the data sets' README
suggests: an item is withdrawn (stock 0) right after its last purchase in the replayed window.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from shopper.demo.client import ShopClient, Shopper
from shopper.domain.event import Event, EventType
from shopper.errors import ShopperError

REES46_TYPES = {
    "view": "view",
    "cart": "add_to_cart",
    "purchase": "purchase",
    "remove_from_cart": "remove_from_cart",
}


CATALOG_BATCH = 500

Row = dict[str, str]


class DatasetError(ShopperError):
    pass


@dataclass(frozen=True, slots=True)
class Dataset:
    """A shipped data set read as canonical records, with no simulated sell-outs: the part
    that `shopper demo` and `shopper load` share."""

    name: str
    prefix: str  # of the event ids it makes
    item_key: str  # the column holding the product id
    files: tuple[Path, ...]
    keep: Callable[[Row], bool]
    to_event: Callable[[int, Row], dict[str, Any]]
    to_item: Callable[[Row], dict[str, Any]]

    def rows(self, limit: int | None = None) -> Iterator[Row]:
        """The rows kept, in file order: at most `limit`, reading no further than needed."""
        return islice(self._kept_rows(), limit)

    def _kept_rows(self) -> Iterator[Row]:
        for file in self.files:
            with gzip.open(file, "rt", newline="") as fh:
                yield from filter(self.keep, csv.DictReader(fh))

    def events(self, rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
        """One canonical event a row; the row's place in the data set makes its event id."""
        return (self.to_event(i, row) for i, row in enumerate(rows))

    def catalog(self, rows: Iterable[Row]) -> list[dict[str, Any]]:
        """One `item_upsert` event a product, dated when the data set first shows it, not
        when the load starts: features such as an item's age then mean the same online and
        offline."""
        first: dict[str, tuple[dict[str, Any], str]] = {}
        for i, row in enumerate(rows):
            if row[self.item_key] not in first:
                first[row[self.item_key]] = (self.to_item(row), self.to_event(i, row)["ts"])
        return [
            {"event_id": f"{self.prefix}-item-{key}", "type": "item_upsert", "ts": ts, "item": item}
            for key, (item, ts) in first.items()
        ]


def find_dataset(path: Path) -> Dataset:
    """Recognise a data set folder by its files."""
    if not path.is_dir():
        raise DatasetError(f"data set folder {path} does not exist")
    if list(path.glob("*.csv.gz")) and (path / "2019-Oct.csv.gz").exists():
        return rees46_dataset(path / "2019-Oct.csv.gz")
    if (path / "by-day").is_dir():
        return uci_dataset(sorted((path / "by-day").glob("*.csv.gz")))
    raise DatasetError(
        f"{path} is neither uci-online-retail (by-day/*.csv.gz) nor "
        "rees46-multicategory-2019oct-head (2019-Oct.csv.gz)"
    )


def open_dataset(path: Path, max_events: int) -> Rees46Replay | UciReplay:
    """The demo's replay of a data set folder."""
    dataset = find_dataset(path)
    if dataset.name == Rees46Replay.name:
        return Rees46Replay(dataset, max_events)
    return UciReplay(dataset, max_events)


def rees46_dataset(file: Path) -> Dataset:
    """REES46 multi-category store: view, cart and purchase events with sessions."""
    return Dataset(
        name="rees46-multicategory-2019oct-head",
        prefix="rees",
        item_key="product_id",
        files=(file,),
        keep=_is_whole,
        to_event=rees46_event,
        to_item=rees46_item,
    )


def _is_whole(row: Row) -> bool:
    # The file's last line was cut mid-row by its uploader: drop any row missing a field.
    return bool(row["user_session"] and row["product_id"])


def rees46_event(i: int, row: Row) -> dict[str, Any]:
    """The `i`-th row of REES46 as a canonical event."""
    return {
        "event_id": f"rees-{i}",
        "type": REES46_TYPES[row["event_type"]],
        "ts": row["event_time"].replace(" UTC", "+00:00"),
        **_rees_shopper(row).ids(),
        "item_id": row["product_id"],
        "price": float(row["price"]),
    }


def rees46_item(row: Row) -> dict[str, Any]:
    """The catalog item a REES46 row shows."""
    return {
        "item_id": row["product_id"],
        "category": row["category_code"] or f"category.{row['category_id']}",
        "brand": row["brand"] or None,
        "price": float(row["price"]),
        "attributes": {"category_id": row["category_id"]},
    }


def _rees_shopper(row: Row) -> Shopper:
    return Shopper(user_id=row["user_id"], session_id=row["user_session"])


def uci_dataset(files: list[Path]) -> Dataset:
    """UCI Online Retail: purchases only, one invoice a visit; guests shop by invoice."""
    return Dataset(
        name="uci-online-retail",
        prefix="uci",
        item_key="StockCode",
        files=tuple(files),
        keep=_is_sale,
        to_event=uci_event,
        to_item=uci_item,
    )


def _is_sale(row: Row) -> bool:
    """Purchases of real products: no cancellations, returns or bookkeeping lines."""
    return (
        not row["InvoiceNo"].startswith("C")
        and int(row["Quantity"]) > 0
        and float(row["UnitPrice"]) > 0
        and row["StockCode"] not in _NON_PRODUCTS
    )


_NON_PRODUCTS = {"POST", "M", "DOT", "BANK CHARGES", "AMAZONFEE", "CRUK", "D", "PADS", "B"}


def uci_event(i: int, row: Row, shopper: Shopper | None = None) -> dict[str, Any]:
    """The `i`-th sale line of UCI as a canonical purchase, by the row's own shopper unless
    `shopper` says otherwise."""
    return {
        "event_id": f"uci-{i}",
        "type": "purchase",
        "ts": _uci_time(row),
        **(shopper or _uci_shopper(row)).ids(),
        "item_id": row["StockCode"],
        "price": max(float(row["UnitPrice"]), 0.0),
        "quantity": int(row["Quantity"]),
        "context": {"country": row["Country"]},
    }


def uci_item(row: Row) -> dict[str, Any]:
    """The catalog item a UCI sale line shows."""
    return {
        "item_id": row["StockCode"],
        "title": row["Description"] or "",
        "price": max(float(row["UnitPrice"]), 0.0),
    }


def _uci_time(row: Row) -> str:
    # The file's times are UK local; the data set's SOURCE treats them as one zone.
    return datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC).isoformat()


def _uci_shopper(row: Row) -> Shopper:
    customer = row["CustomerID"].removesuffix(".0") if row["CustomerID"] else None
    return Shopper(user_id=customer, session_id=f"inv-{row['InvoiceNo']}", country=row["Country"])


class Rees46Replay:
    """REES46 as a shop's traffic: each view is a page asking for recommendations."""

    name = "rees46-multicategory-2019oct-head"

    def __init__(self, dataset: Dataset, max_events: int) -> None:
        self.dataset = dataset
        self.rows = list(dataset.rows(max_events))
        self.total = len(self.rows)
        self.withdrawn: list[str] = []

    def run(self, shop: ShopClient, tick: Callable[[int], None]) -> None:
        _list_catalog(shop, self.dataset.catalog(self.rows))
        last_purchase = {
            r["product_id"]: i for i, r in enumerate(self.rows) if r["event_type"] == "purchase"
        }
        pending: list[dict[str, Any]] = []
        for i, row in enumerate(self.rows):
            pending.append(rees46_event(i, row))
            if last_purchase.get(row["product_id"]) == i:
                pending.append(_stock_zero(f"rees-{i}-out", row["product_id"], pending[-1]["ts"]))
                self.withdrawn.append(row["product_id"])
            if row["event_type"] == "view":
                shop.post(pending)
                tick(len(pending))
                pending = []
                shop.recommend(_rees_shopper(row), context_item=row["product_id"])
        shop.post(pending)
        tick(len(pending))


class UciReplay:
    """UCI as a shop's traffic: each invoice is a visit that sees a page, then buys."""

    name = "uci-online-retail"

    def __init__(self, dataset: Dataset, max_events: int) -> None:
        self.dataset = dataset
        self.rows = list(dataset.rows(max_events))
        self.total = len(self.rows)
        self.withdrawn: list[str] = []

    def run(self, shop: ShopClient, tick: Callable[[int], None]) -> None:
        _list_catalog(shop, self.dataset.catalog(self.rows))
        last_purchase = {r["StockCode"]: i for i, r in enumerate(self.rows)}
        for lines in self._invoices():
            shopper = _uci_shopper(lines[0][1])
            # The page the customer saw on arrival, before buying.
            shop.recommend(shopper)
            events = []
            for i, row in lines:
                events.append(uci_event(i, row, shopper))
                if last_purchase[row["StockCode"]] == i:
                    events.append(_stock_zero(f"uci-{i}-out", row["StockCode"], events[-1]["ts"]))
                    self.withdrawn.append(row["StockCode"])
            shop.post(events)
            tick(len(lines))

    def _invoices(self) -> Iterator[list[tuple[int, Row]]]:
        current: list[tuple[int, Row]] = []
        for i, row in enumerate(self.rows):
            if current and current[0][1]["InvoiceNo"] != row["InvoiceNo"]:
                yield current
                current = []
            current.append((i, row))
        if current:
            yield current


def _list_catalog(shop: ShopClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), CATALOG_BATCH):
        shop.post(events[start : start + CATALOG_BATCH])


def _stock_zero(event_id: str, item_id: str, ts: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "stock_change",
        "ts": ts,
        "item_id": item_id,
        "quantity": 0,
    }


def dataset_events(path: Path) -> list[Event]:
    """A data set folder as the domain events a shop would have archived: its catalog
    (listed when first seen) and every kept row, decoded as the processor decodes them.
    The lines of a UCI invoice share its time; here they are `LINE_S` apart in file order
    (each item at its first line's), as a till scans them, so that features taken in the
    middle of a basket hold its first lines and not the rest (see `training.moments`)."""
    from shopper.codec import parse_event
    from shopper.training.moments import LINE_S

    dataset = find_dataset(path)
    rows = list(dataset.rows())
    raw = [*dataset.catalog(rows), *dataset.events(rows)]
    events = [parse_event(r).to_domain() for r in raw]
    if dataset.name != "uci-online-retail":
        return events
    positions: dict[str, dict[str, int]] = {}
    spaced = []
    for event in events:
        if event.type is EventType.PURCHASE and event.session_id and event.item_id:
            lines = positions.setdefault(event.session_id, {})
            at = lines.setdefault(event.item_id, len(lines))
            event = replace(event, ts=event.ts + at * LINE_S)
        spaced.append(event)
    return spaced
