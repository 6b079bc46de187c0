"""The canonical wire format of events and items (JSON), validated at the edges.

The API validates what shops send with these models; the processor decodes what it reads
from the stream with the same models, so both sides agree on one format.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from shopper.domain.event import CATALOG_TYPES, ITEM_TYPES, Event, EventContext, EventType
from shopper.domain.item import Item
from shopper.errors import InvalidEvent


def _id_text(value: Any) -> Any:
    """Ids may arrive as numbers (many shops use integer ids); they are text inside."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


Id = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=128)]


def _category_path(value: Any) -> Any:
    if isinstance(value, str):
        sep = ">" if ">" in value else "."
        return [part.strip() for part in value.split(sep) if part.strip()]
    return value


class _Strict(BaseModel):
    # No inf/NaN: JSON cannot carry them, so an accepted event would not survive the stream.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContextIn(_Strict):
    device: str | None = Field(None, max_length=64)
    country: str | None = Field(None, max_length=64)
    referrer: str | None = Field(None, max_length=512)
    page: str | None = Field(None, max_length=512)


class ItemIn(_Strict):
    item_id: Id
    title: str = Field("", max_length=1000)
    category: Annotated[list[str], BeforeValidator(_category_path)] = Field(default_factory=list)
    brand: str | None = Field(None, max_length=200)
    price: float | None = Field(None, ge=0)
    stock: int | None = Field(None, ge=0)
    attributes: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime | None = None

    def to_domain(self) -> Item:
        return Item(
            item_id=self.item_id,
            title=self.title,
            category=tuple(self.category),
            brand=self.brand,
            price=self.price,
            stock=self.stock,
            attributes=dict(self.attributes),
            created_at=self.created_at.timestamp() if self.created_at else None,
        )


class EventIn(_Strict):
    event_id: Id
    type: EventType
    ts: AwareDatetime
    user_id: Id | None = None
    session_id: Id | None = None
    item_id: Id | None = None
    price: float | None = Field(None, ge=0)
    quantity: int | None = None
    dwell_ms: int | None = Field(None, ge=0)
    query: str | None = Field(None, max_length=500)
    context: ContextIn = ContextIn()
    list_id: str | None = Field(None, max_length=128)
    variant: str | None = Field(None, max_length=64)
    position: int | None = Field(None, ge=0)
    item: ItemIn | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> Self:
        t = self.type
        if t is EventType.ITEM_UPSERT:
            if self.item is None:
                raise ValueError("item_upsert needs an 'item' object")
            if self.item_id not in (None, self.item.item_id):
                raise ValueError("item_id differs from item.item_id")
        elif t in ITEM_TYPES and self.item_id is None:
            raise ValueError(f"{t.value} needs an 'item_id'")
        if t not in CATALOG_TYPES and self.user_id is None and self.session_id is None:
            raise ValueError(f"{t.value} needs a 'user_id' or a 'session_id'")
        if t is EventType.STOCK_CHANGE and (self.quantity is None or self.quantity < 0):
            raise ValueError("stock_change needs 'quantity', the new stock level (>= 0)")
        if t is EventType.PRICE_CHANGE and self.price is None:
            raise ValueError("price_change needs 'price'")
        if t is EventType.DWELL and self.dwell_ms is None:
            raise ValueError("dwell needs 'dwell_ms'")
        return self

    def to_domain(self) -> Event:
        item = self.item.to_domain() if self.item else None
        return Event(
            event_id=self.event_id,
            type=self.type,
            ts=self.ts.timestamp(),
            session_id=self.session_id,
            user_id=self.user_id,
            item_id=item.item_id if item else self.item_id,
            price=self.price,
            quantity=self.quantity,
            dwell_ms=self.dwell_ms,
            query=self.query,
            context=EventContext(**self.context.model_dump()),
            list_id=self.list_id,
            variant=self.variant,
            position=self.position,
            item=item,
        )


def parse_event(raw: Any) -> EventIn:
    """Validate one decoded JSON value as an event, or raise InvalidEvent with the reasons."""
    try:
        return EventIn.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(validation_reasons(exc)) from None


def decode_event(value: bytes) -> Event:
    """Decode one stream record into a domain event, or raise InvalidEvent."""
    try:
        return EventIn.model_validate_json(value).to_domain()
    except ValidationError as exc:
        raise InvalidEvent(validation_reasons(exc)) from None


def encode_event(event: EventIn) -> bytes:
    return event.model_dump_json(exclude_none=True, exclude_defaults=True).encode()


def validation_reasons(exc: ValidationError) -> list[str]:
    reasons = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        reasons.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return reasons
