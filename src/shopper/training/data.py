"""Training data: shopper events, the catalog and (optionally) users as tables.

Sources: the event archive, canonical files (`--events FILE --catalog FILE [--users
FILE]`, formats in docs/formats.md), or the two shipped data set folders. Every source
ends in the same `Interactions`, so training, evaluation and export never care which.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopper.codec import parse_event
from shopper.domain.event import INTEREST_WEIGHT, Event, EventType
from shopper.domain.item import Item
from shopper.domain.session import interest_weight
from shopper.errors import InvalidEvent, ShopperError
from shopper.formats import read_records

EVENT_COLUMNS = ["subject", "item_id", "ts", "type", "weight", "purchase", "country", "device",
                 "referrer"]  # fmt: skip
CATALOG_COLUMNS = ["item_id", "text", "listed_at"]
MAX_REASONS = 10


class DataError(ShopperError):
    """Training data that cannot be used, with the reason."""


@dataclass(frozen=True)
class Interactions:
    """Shopper events (one row per interaction with an item) and the catalog.

    `events`: subject (`u:<user>` / `s:<session>`), item_id, ts (epoch s), type, weight
    (interest by type), purchase (bool), country, device, referrer; the shipped data sets
    also give `session` (the visit: an invoice, a browsing session), in file order.
    `catalog`: item_id, text (title, category path, brand, price band, attributes),
    listed_at (epoch s or NaN). `skipped`: records rejected, with the first reasons."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    skipped: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def span(self) -> tuple[float, float]:
        if self.events.empty:
            return (0.0, 0.0)
        return float(self.events.ts.min()), float(self.events.ts.max())

    def before(self, cut: float) -> Interactions:
        """Only the events before `cut`. The catalog stays (items may be listed early), but
        a listing time from `cut` on is not known yet: kept, it would mark the items that
        start selling after `cut` as new listings, telling the model the future."""
        listed = self.catalog.listed_at.where(self.catalog.listed_at < cut)
        return Interactions(
            self.events[self.events.ts < cut], self.catalog.assign(listed_at=listed)
        )

    def between(self, start: float, end: float) -> pd.DataFrame:
        ev = self.events
        return ev[(ev.ts >= start) & (ev.ts < end)]


# --- from domain events (the archive, canonical files) -------------------------------


def from_events(
    events: Iterable[Event],
    items: Iterable[Item] = (),
    users: dict[str, dict[str, str]] | None = None,
    skipped: int = 0,
    reasons: tuple[str, ...] = (),
) -> Interactions:
    """Tables from events; catalog events and `items` make the catalog. `users` maps a
    user id to its `country` (used when an event says none)."""
    rows: list[tuple[Any, ...]] = []
    catalog: dict[str, tuple[str, float]] = {}
    for item in items:
        catalog[item.item_id] = (item_text(item), item.created_at or np.nan)
    for e in events:
        if e.type is EventType.ITEM_UPSERT and e.item is not None:
            listed = e.item.created_at or catalog.get(e.item.item_id, ("", e.ts))[1]
            catalog[e.item.item_id] = (item_text(e.item), listed)
            continue
        weight = interest_weight(e)
        if e.item_id is None or weight <= 0 or e.is_catalog:
            continue
        country = e.context.country
        if country is None and users and e.user_id in users:
            country = users[e.user_id].get("country")
        rows.append(
            (
                e.subject,
                e.item_id,
                e.ts,
                e.type.value,
                weight,
                e.type is EventType.PURCHASE,
                country,
                e.context.device,
                e.context.referrer,
                e.session_id or e.subject,  # the visit (a shopper without one: one visit)
            )
        )
    frame = pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "session"])
    cat = pd.DataFrame(
        [(i, text, listed) for i, (text, listed) in catalog.items()], columns=CATALOG_COLUMNS
    )
    return Interactions(frame, cat, skipped, reasons)


def item_text(item: Item) -> str:
    """What content-based similarity reads of an item: words of its title, category path,
    brand, price band and attributes (`cat_` / `brand_` tokens keep fields apart)."""
    parts = [item.title]
    parts += [f"cat_{_token(c)}" for c in _prefixes(item.category)]
    if item.brand:
        parts.append(f"brand_{_token(item.brand)}")
    if item.price is not None and item.price > 0:
        parts.append(f"price_band_{int(np.floor(np.log2(item.price + 1)))}")
    parts += [f"{_token(k)}_{_token(v)}" for k, v in sorted(item.attributes.items())]
    return " ".join(p for p in parts if p)


def _prefixes(path: tuple[str, ...]) -> list[str]:
    return ["/".join(path[: i + 1]) for i in range(len(path))]


def _token(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower())


def from_files(
    events: Path, catalog: Path | None = None, users: Path | None = None
) -> Interactions:
    """Canonical files (JSON lines or CSV, maybe gzipped). A bad record is skipped and
    counted, with its reasons; the good ones are used."""
    bad: list[str] = []
    decoded = list(_valid_events(events, bad))
    items = list(_valid_items(catalog, bad)) if catalog else []
    user_rows = read_users(users) if users else None
    if not decoded:
        raise DataError(f"{events}: no valid events ({'; '.join(bad[:3]) or 'empty file'})")
    return from_events(decoded, items, user_rows, len(bad), tuple(bad[:MAX_REASONS]))


def file_events(events: Path, catalog: Path | None = None) -> list[Event]:
    """Canonical files as the domain events a shop would have archived (the feature
    store's backfill reads them): the valid events, and each catalog item as an
    `item_upsert` dated when it was listed, else when the events first show it."""
    decoded = list(_valid_events(events, []))
    first: dict[str, float] = {}
    for e in decoded:
        if e.item_id is not None:
            first[e.item_id] = min(e.ts, first.get(e.item_id, e.ts))
    start = min((e.ts for e in decoded), default=0.0)
    upserts = [
        Event(f"catalog-{item.item_id}", EventType.ITEM_UPSERT,
              item.created_at or first.get(item.item_id, start), item_id=item.item_id,
              item=item)
        for item in (_valid_items(catalog, []) if catalog else ())
    ]  # fmt: skip
    return [*upserts, *decoded]


def _valid_events(path: Path, bad: list[str]) -> Iterable[Event]:
    for n, record in enumerate(read_records(path), start=1):
        try:
            yield parse_event(record).to_domain()
        except InvalidEvent as exc:
            bad.append(f"{path.name} record {n}: {exc}")


def _valid_items(path: Path, bad: list[str]) -> Iterable[Item]:
    from pydantic import ValidationError

    from shopper.codec import ItemIn

    for n, record in enumerate(read_records(path), start=1):
        try:
            yield ItemIn.model_validate(record).to_domain()
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            bad.append(f"{path.name} record {n}: {reasons}")


def read_users(path: Path) -> dict[str, dict[str, str]]:
    """Users file: `user_id`, `country`, `region`, `attributes.*` (docs/formats.md)."""
    out: dict[str, dict[str, str]] = {}
    for n, record in enumerate(read_records(path), start=1):
        if not isinstance(record, dict) or "user_id" not in record:
            raise DataError(f"{path.name} record {n}: a user needs a 'user_id'")
        user = {k: str(v) for k, v in record.items() if k != "attributes" and v is not None}
        out[str(record["user_id"])] = user
    return out


# --- the shipped data sets ---------------------------------------------------------------

UCI_NON_PRODUCTS = frozenset(
    {"POST", "M", "DOT", "BANK CHARGES", "AMAZONFEE", "CRUK", "D", "PADS", "B", "C2", "S"}
)
REES46_TYPES = {"view": "view", "cart": "add_to_cart", "purchase": "purchase"}


def from_dataset(path: Path, anonymous: bool = False) -> Interactions:
    """One of the shipped data set folders: `uci-online-retail` or
    `rees46-multicategory-2019oct-head`. UCI rows without a customer are dropped unless
    `anonymous` (then the invoice is a session)."""
    if (path / "by-day").is_dir():
        return uci(sorted((path / "by-day").glob("*.csv.gz")), anonymous)
    if (path / "2019-Oct.csv.gz").exists():
        return rees46(path / "2019-Oct.csv.gz")
    if not path.exists():
        raise DataError(f"data set folder {path} does not exist")
    raise DataError(
        f"{path} is neither uci-online-retail (by-day/*.csv.gz) nor "
        "rees46-multicategory-2019oct-head (2019-Oct.csv.gz)"
    )


def uci_rows(files: list[Path], anonymous: bool = False) -> pd.DataFrame:
    """The raw UCI lines that are sales of products (see `uci`), as read from the files."""
    if not files:
        raise DataError("no UCI day files (by-day/*.csv.gz)")
    dtypes = {"InvoiceNo": str, "StockCode": str, "CustomerID": str, "Description": str}
    df = pd.concat(pd.read_csv(f, dtype=dtypes) for f in files)
    keep = (
        ~df.InvoiceNo.str.startswith("C")
        & (df.Quantity > 0)
        & (df.UnitPrice > 0)
        & ~df.StockCode.isin(UCI_NON_PRODUCTS)
    )
    if not anonymous:
        keep &= df.CustomerID.notna()
    return df[keep]


def uci(files: list[Path], anonymous: bool = False) -> Interactions:
    """UCI Online Retail, cleaned: no cancellations, no non-positive quantity or price, no
    bookkeeping codes; each invoice line is one purchase."""
    df = uci_rows(files, anonymous)
    ts = pd.to_datetime(df.InvoiceDate).dt.tz_localize(UTC).astype("int64") // 10**9
    customer = df.CustomerID.fillna("").str.removesuffix(".0")
    subject = np.where(customer != "", "u:" + customer, "s:inv-" + df.InvoiceNo)
    events = pd.DataFrame(
        {
            "subject": subject,
            "item_id": df.StockCode.to_numpy(),
            "ts": ts.to_numpy(dtype=np.float64),
            "type": "purchase",
            "weight": INTEREST_WEIGHT[EventType.PURCHASE],
            "purchase": True,
            "country": df.Country.to_numpy(),
            "device": None,
            "referrer": None,
            "session": ("inv-" + df.InvoiceNo).to_numpy(),  # an invoice is a visit
        }
    )
    first = (
        df.assign(ts=ts)
        .groupby("StockCode")
        .agg(text=("Description", "first"), price=("UnitPrice", "median"), listed_at=("ts", "min"))
    )
    catalog = pd.DataFrame(
        {
            "item_id": first.index.to_numpy(),
            "text": [
                item_text(Item(i, title=str(t or ""), price=float(p)))
                for i, t, p in zip(first.index, first.text.fillna(""), first.price, strict=True)
            ],
            "listed_at": first.listed_at.to_numpy(dtype=np.float64),
        }
    )
    return Interactions(events.reset_index(drop=True), catalog)


def rees46(file: Path) -> Interactions:
    """REES46 multi-category store: views, carts and purchases of signed-in users."""
    with gzip.open(file, "rt", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["user_session"] and r["product_id"]]
    weight: Callable[[str], float] = lambda t: INTEREST_WEIGHT[EventType(REES46_TYPES[t])]  # noqa: E731
    events = pd.DataFrame(
        {
            "subject": ["u:" + r["user_id"] for r in rows],
            "item_id": [r["product_id"] for r in rows],
            "ts": [_rees_time(r["event_time"]) for r in rows],
            "type": [REES46_TYPES[r["event_type"]] for r in rows],
            "weight": [weight(r["event_type"]) for r in rows],
            "purchase": [r["event_type"] == "purchase" for r in rows],
            "country": None,
            "device": None,
            "referrer": None,
            "session": [r["user_session"] for r in rows],
        }
    )
    catalog: dict[str, tuple[str, float]] = {}
    for r in rows:
        if r["product_id"] not in catalog:
            item = Item(
                r["product_id"],
                category=tuple((r["category_code"] or f"category_{r['category_id']}").split(".")),
                brand=r["brand"] or None,
                price=float(r["price"]),
            )
            catalog[item.item_id] = (item_text(item), _rees_time(r["event_time"]))
    cat = pd.DataFrame([(i, t, ts) for i, (t, ts) in catalog.items()], columns=CATALOG_COLUMNS)
    return Interactions(events, cat)


def _rees_time(text: str) -> float:
    return datetime.fromisoformat(text.replace(" UTC", "+00:00")).timestamp()
