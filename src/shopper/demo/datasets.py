"""Replays of real data sets through the shop frontend.

Neither data set has stock, so sell-outs are simulated the way their README suggests: an
item is withdrawn (stock 0) right after its last purchase in the replayed window.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopper.demo.client import ShopClient, Shopper
from shopper.errors import ShopperError

REES46_TYPES = {
    "view": "view",
    "cart": "add_to_cart",
    "purchase": "purchase",
    "remove_from_cart": "remove_from_cart",
}


CATALOG_BATCH = 500


class DatasetError(ShopperError):
    pass


def open_dataset(path: Path, max_events: int) -> Rees46Replay | UciReplay:
    """Recognise a data set folder by its files."""
    if not path.is_dir():
        raise DatasetError(f"data set folder {path} does not exist")
    if list(path.glob("*.csv.gz")) and (path / "2019-Oct.csv.gz").exists():
        return Rees46Replay(path / "2019-Oct.csv.gz", max_events)
    if (path / "by-day").is_dir():
        return UciReplay(sorted((path / "by-day").glob("*.csv.gz")), max_events)
    raise DatasetError(
        f"{path} is neither uci-online-retail (by-day/*.csv.gz) nor "
        "rees46-multicategory-2019oct-head (2019-Oct.csv.gz)"
    )


class Rees46Replay:
    """REES46 multi-category store: view, cart and purchase events with sessions."""

    name = "rees46-multicategory-2019oct-head"

    def __init__(self, file: Path, max_events: int) -> None:
        with gzip.open(file, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
        # The file's last line was cut mid-row by its uploader: drop any row missing a field.
        self.rows = [r for r in rows if r["user_session"] and r["product_id"]][:max_events]
        self.total = len(self.rows)
        self.withdrawn: list[str] = []

    def run(self, shop: ShopClient, tick: Callable[[int], None]) -> None:
        _list_catalog(shop, "rees", self._items())
        last_purchase = {
            r["product_id"]: i for i, r in enumerate(self.rows) if r["event_type"] == "purchase"
        }
        pending: list[dict[str, Any]] = []
        for i, row in enumerate(self.rows):
            pending.append(self._event(i, row))
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

    def _items(self) -> dict[str, tuple[dict[str, Any], str]]:
        items: dict[str, tuple[dict[str, Any], str]] = {}
        for i, row in enumerate(self.rows):
            if row["product_id"] in items:
                continue
            item = {
                "item_id": row["product_id"],
                "category": row["category_code"] or f"category.{row['category_id']}",
                "brand": row["brand"] or None,
                "price": float(row["price"]),
                "attributes": {"category_id": row["category_id"]},
            }
            items[row["product_id"]] = (item, self._event(i, row)["ts"])
        return items

    def _event(self, i: int, row: dict[str, str]) -> dict[str, Any]:
        shopper = _rees_shopper(row)
        return {
            "event_id": f"rees-{i}",
            "type": REES46_TYPES[row["event_type"]],
            "ts": row["event_time"].replace(" UTC", "+00:00"),
            **shopper.ids(),
            "item_id": row["product_id"],
            "price": float(row["price"]),
        }


def _rees_shopper(row: dict[str, str]) -> Shopper:
    return Shopper(user_id=row["user_id"], session_id=row["user_session"])


class UciReplay:
    """UCI Online Retail: purchases only, one invoice a visit; guests shop by invoice."""

    name = "uci-online-retail"

    def __init__(self, files: list[Path], max_events: int) -> None:
        self.rows: list[dict[str, str]] = []
        for file in files:
            with gzip.open(file, "rt", newline="") as fh:
                self.rows.extend(r for r in csv.DictReader(fh) if _is_sale(r))
            if len(self.rows) >= max_events:
                break
        self.rows = self.rows[:max_events]
        self.total = len(self.rows)
        self.withdrawn: list[str] = []

    def run(self, shop: ShopClient, tick: Callable[[int], None]) -> None:
        _list_catalog(shop, "uci", self._items())
        last_purchase = {r["StockCode"]: i for i, r in enumerate(self.rows)}
        for invoice, lines in self._invoices():
            shopper = _uci_shopper(lines[0][1])
            # The page the customer saw on arrival, before buying.
            shop.recommend(shopper)
            events = []
            for i, row in lines:
                events.append(self._event(i, row, invoice, shopper))
                if last_purchase[row["StockCode"]] == i:
                    events.append(_stock_zero(f"uci-{i}-out", row["StockCode"], events[-1]["ts"]))
                    self.withdrawn.append(row["StockCode"])
            shop.post(events)
            tick(len(lines))

    def _invoices(self) -> Iterator[tuple[str, list[tuple[int, dict[str, str]]]]]:
        current: list[tuple[int, dict[str, str]]] = []
        for i, row in enumerate(self.rows):
            if current and current[0][1]["InvoiceNo"] != row["InvoiceNo"]:
                yield current[0][1]["InvoiceNo"], current
                current = []
            current.append((i, row))
        if current:
            yield current[0][1]["InvoiceNo"], current

    def _items(self) -> dict[str, tuple[dict[str, Any], str]]:
        items: dict[str, tuple[dict[str, Any], str]] = {}
        for row in self.rows:
            if row["StockCode"] in items:
                continue
            item = {
                "item_id": row["StockCode"],
                "title": row["Description"] or "",
                "price": max(float(row["UnitPrice"]), 0.0),
            }
            items[row["StockCode"]] = (item, _uci_time(row))
        return items

    def _event(self, i: int, row: dict[str, str], invoice: str, shopper: Shopper) -> dict[str, Any]:
        return {
            "event_id": f"uci-{i}",
            "type": "purchase",
            "ts": _uci_time(row),
            **shopper.ids(),
            "item_id": row["StockCode"],
            "price": max(float(row["UnitPrice"]), 0.0),
            "quantity": int(row["Quantity"]),
            "context": {"country": row["Country"]},
        }


def _uci_time(row: dict[str, str]) -> str:
    # The file's times are UK local; the data set's SOURCE treats them as one zone.
    return datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC).isoformat()


def _list_catalog(
    shop: ShopClient, name: str, items: dict[str, tuple[dict[str, Any], str]]
) -> None:
    """Each item is listed when the data set first shows it, not when the replay starts:
    features such as an item's age then mean the same online and offline."""
    events = [
        {"event_id": f"{name}-item-{item_id}", "type": "item_upsert", "ts": ts, "item": item}
        for item_id, (item, ts) in items.items()
    ]
    for start in range(0, len(events), CATALOG_BATCH):
        shop.post(events[start : start + CATALOG_BATCH])


def _is_sale(row: dict[str, str]) -> bool:
    """Purchases of real products: no cancellations, returns or bookkeeping lines."""
    return (
        not row["InvoiceNo"].startswith("C")
        and int(row["Quantity"]) > 0
        and float(row["UnitPrice"]) > 0
        and row["StockCode"] not in _NON_PRODUCTS
    )


_NON_PRODUCTS = {"POST", "M", "DOT", "BANK CHARGES", "AMAZONFEE", "CRUK", "D", "PADS", "B"}


def _uci_shopper(row: dict[str, str]) -> Shopper:
    customer = row["CustomerID"].removesuffix(".0") if row["CustomerID"] else None
    return Shopper(user_id=customer, session_id=f"inv-{row['InvoiceNo']}", country=row["Country"])


def _stock_zero(event_id: str, item_id: str, ts: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "stock_change",
        "ts": ts,
        "item_id": item_id,
        "quantity": 0,
    }
