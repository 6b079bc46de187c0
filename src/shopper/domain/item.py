"""Catalog items."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str = ""
    category: tuple[str, ...] = ()
    brand: str | None = None
    price: float | None = None
    stock: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @property
    def in_stock(self) -> bool:
        """Unknown stock counts as available: only a known zero hides an item."""
        return self.stock is None or self.stock > 0
