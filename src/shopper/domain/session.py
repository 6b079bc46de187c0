"""Live session context of one shopper: recent items, cart, dwell."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shopper.domain.event import INTEREST_WEIGHT, Event, EventType

RECENT_LIMIT = 20


@dataclass(slots=True)
class Interaction:
    item_id: str
    weight: float
    ts: float


@dataclass(slots=True)
class SessionState:
    """What the processor knows of one shopper (a user, or an anonymous session)."""

    subject: str
    recent: list[Interaction] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)
    purchased: list[str] = field(default_factory=list)
    dwell_ms: dict[str, int] = field(default_factory=dict)
    interactions: int = 0
    country: str | None = None
    device: str | None = None
    last_seen: float = 0.0
    linked: list[str] = field(default_factory=list)  # anonymous sessions joined at sign-in

    def join(self, session_id: str, anonymous: SessionState | None) -> bool:
        """Sign-in: the anonymous session's history, cart and purchases join this user's,
        once per session id. Returns whether the session was new to this user."""
        if session_id in self.linked:
            return False
        self.linked = [*self.linked[-(RECENT_LIMIT - 1) :], session_id]
        if anonymous is None or anonymous.interactions == 0:
            return True
        merged = sorted([*self.recent, *anonymous.recent], key=lambda i: i.ts)
        self.recent = merged[-RECENT_LIMIT:]
        for item, quantity in anonymous.cart.items():
            self.cart[item] = self.cart.get(item, 0) + quantity
        for item in anonymous.purchased:
            if item not in self.purchased:
                self.purchased.append(item)
        self.purchased = self.purchased[-RECENT_LIMIT:]
        for item, ms in anonymous.dwell_ms.items():
            self.dwell_ms[item] = self.dwell_ms.get(item, 0) + ms
        self.interactions += anonymous.interactions
        self.country = self.country or anonymous.country
        self.device = self.device or anonymous.device
        self.last_seen = max(self.last_seen, anonymous.last_seen)
        return True

    def apply(self, event: Event) -> str | None:
        """Fold one event in. Returns the item this shopper showed interest in, if any."""
        self.last_seen = max(self.last_seen, event.ts)
        self.country = event.context.country or self.country
        self.device = event.context.device or self.device
        item = event.item_id
        if item is None:
            return None
        if event.type is EventType.ADD_TO_CART:
            self.cart[item] = self.cart.get(item, 0) + max(event.quantity or 1, 1)
        elif event.type is EventType.REMOVE_FROM_CART:
            self.cart.pop(item, None)
        elif event.type is EventType.PURCHASE:
            self.cart.pop(item, None)
            if item not in self.purchased:
                self.purchased = [*self.purchased[-(RECENT_LIMIT - 1) :], item]
        elif event.type is EventType.DWELL:
            self.dwell_ms[item] = self.dwell_ms.get(item, 0) + (event.dwell_ms or 0)
        weight = interest_weight(event)
        if weight <= 0:
            return None
        self.interactions += 1
        self.recent = [*self.recent[-(RECENT_LIMIT - 1) :], Interaction(item, weight, event.ts)]
        return item

    def recent_items(self) -> list[str]:
        """Distinct recent items, most recent first."""
        seen: dict[str, None] = {}
        for it in reversed(self.recent):
            seen.setdefault(it.item_id, None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "recent": [[i.item_id, i.weight, i.ts] for i in self.recent],
            "cart": self.cart,
            "purchased": self.purchased,
            "dwell_ms": self.dwell_ms,
            "interactions": self.interactions,
            "country": self.country,
            "device": self.device,
            "last_seen": self.last_seen,
            "linked": self.linked,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionState:
        return cls(
            subject=data["subject"],
            recent=[Interaction(str(i), float(w), float(t)) for i, w, t in data["recent"]],
            cart={str(k): int(v) for k, v in data["cart"].items()},
            purchased=[str(p) for p in data["purchased"]],
            dwell_ms={str(k): int(v) for k, v in data["dwell_ms"].items()},
            interactions=int(data["interactions"]),
            country=data.get("country"),
            device=data.get("device"),
            last_seen=float(data["last_seen"]),
            linked=[str(s) for s in data.get("linked", [])],
        )


def interest_weight(event: Event) -> float:
    """Dwell counts per 10 s on the page, capped; other interactions by type."""
    if event.type is EventType.DWELL:
        return INTEREST_WEIGHT[EventType.DWELL] * min((event.dwell_ms or 0) / 10_000, 3.0)
    return INTEREST_WEIGHT.get(event.type, 0.0)
