"""The canonical wire format of events and items (JSON), validated at the edges.

The API validates what shops send with these models; the processor decodes what it reads
from the stream with the same models, so both sides agree on one format. An event is one
of a discriminated union on `type`: each variant states the fields its type needs, so the
OpenAPI schema tells a generated client exactly what each event type takes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shopper.codec_edge import MAX_EPOCH_S, NOT_UNICODE, NUMERIC, check_edge, printable
from shopper.domain.event import Event, EventContext, EventType
from shopper.domain.item import Item
from shopper.errors import InvalidEvent

# Ids and keys (segment values, list ids, variants) appear in logs, keys and pages: no
# control characters (NUL, CR, LF, ...). The schema states it; `check_edge` enforces it.
_KEY_TEXT = r"^[^\x00-\x1f\x7f-\x9f]*$"
_ID_TEXT = r"^[^\x00-\x1f\x7f-\x9f]+$"
_KEY: dict[str, Any] = {"pattern": _KEY_TEXT}  # a property's pattern holds for strings only
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _id_text(value: Any) -> Any:
    """Ids may arrive as numbers (many shops use integer ids, up to 64 bits); they are text
    inside."""
    if type(value) is str:  # the common case first: the processor decodes every id
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 42.0 is the integer 42
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return str(value)
    return value


def _time_text(value: Any) -> Any:
    """`created_at` is an ISO 8601 string, as the schema says (not epoch seconds)."""
    if isinstance(value, datetime) or (isinstance(value, str) and not NUMERIC.fullmatch(value)):
        return value
    raise ValueError("a date-time string (ISO 8601 with a time zone) is needed")


Id = Annotated[
    str,
    BeforeValidator(_id_text),
    Field(min_length=1, max_length=128),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 128, "pattern": _ID_TEXT},
                {"type": "integer", "minimum": _INT64_MIN, "maximum": _INT64_MAX},
            ]
        }
    ),
]
# Counts (quantities, positions, milliseconds) within 32 bits: any real one fits, and a
# bigger one would overflow arithmetic downstream (revenue = price x quantity).
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
SignedCount = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Money = Annotated[float, Field(ge=0)]
Text = str
# Epoch seconds are taken as well as ISO 8601 (many trackers send numbers).
EventTime = Annotated[
    AwareDatetime,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_EPOCH_S},
            ]
        }
    ),
]
ItemTime = Annotated[AwareDatetime, BeforeValidator(_time_text)]


def _category_path(value: Any) -> Any:
    if isinstance(value, str):
        sep = ">" if ">" in value else "."
        return [part.strip() for part in value.split(sep) if part.strip()]
    return value


class _Strict(BaseModel):
    # No inf/NaN: JSON cannot carry them, so an accepted event would not survive the stream.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContextIn(_Strict):
    device: str | None = Field(None, max_length=64, json_schema_extra=_KEY)
    country: str | None = Field(None, max_length=64, json_schema_extra=_KEY)
    referrer: Text | None = Field(None, max_length=512)
    page: Text | None = Field(None, max_length=512)


class ItemIn(_Strict):
    item_id: Id
    title: Text = Field("", max_length=1000)
    category: Annotated[
        list[Annotated[Text, Field(max_length=200)]], BeforeValidator(_category_path)
    ] = Field(default_factory=list, max_length=20)
    brand: Text | None = Field(None, max_length=200)
    price: Money | None = None
    stock: Count | None = None
    attributes: dict[
        Annotated[Text, Field(max_length=200)], Annotated[Text, Field(max_length=1000)]
    ] = Field(default_factory=dict, max_length=100)
    created_at: ItemTime | None = None

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


# The shopper of a shopper event: a `user_id` or a `session_id`, not null (stated in the
# schema too, so a generated request never lacks both).
_A_SHOPPER: dict[str, Any] = {
    "anyOf": [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("user_id", "session_id")
    ]
}


class _EventFields(_Strict):
    """Fields every event may carry; each variant below adds what its type needs."""

    event_id: Id
    type: EventType
    ts: EventTime
    user_id: Id | None = None
    session_id: Id | None = None
    price: Money | None = None
    quantity: SignedCount | None = None
    dwell_ms: Count | None = None
    query: Text | None = Field(None, max_length=500)
    context: ContextIn = ContextIn()
    list_id: str | None = Field(None, max_length=128, json_schema_extra=_KEY)
    variant: str | None = Field(None, max_length=64, json_schema_extra=_KEY)
    position: Count | None = None
    # Stamped by the API on accepting the event (a client may not send it): the server's
    # word on when, which orders catalog changes (`domain.event.order_time`).
    received_at: SkipJsonSchema[AwareDatetime | None] = None

    def to_domain(self) -> Event:
        item = self._item()
        return Event(
            event_id=self.event_id,
            type=self.type,
            ts=self.ts.timestamp(),
            session_id=self.session_id,
            user_id=self.user_id,
            # Each variant but the upsert (whose item holds it) has an `item_id`.
            item_id=item.item_id if item else getattr(self, "item_id", None),
            price=self.price,
            quantity=self.quantity,
            dwell_ms=self.dwell_ms,
            query=self.query,
            context=EventContext(**self.context.model_dump()),
            list_id=self.list_id,
            variant=self.variant,
            position=self.position,
            item=item,
            received_at=self.received_at.timestamp() if self.received_at else None,
        )

    def _item(self) -> Item | None:
        return None


class _ShopperEventFields(_EventFields):
    model_config = ConfigDict(json_schema_extra=_A_SHOPPER)

    @model_validator(mode="after")
    def _has_a_shopper(self) -> Self:
        if self.user_id is None and self.session_id is None:
            raise ValueError(f"{self.type.value} needs a 'user_id' or a 'session_id'")
        return self


class InteractionIn(_ShopperEventFields):
    """A shopper did something with an item (`quantity`: units carted or bought)."""

    type: Literal[
        EventType.VIEW,
        EventType.CLICK,
        EventType.ADD_TO_CART,
        EventType.REMOVE_FROM_CART,
        EventType.PURCHASE,
    ]
    item_id: Id


class DwellIn(_ShopperEventFields):
    """Time a shopper spent on an item's page."""

    type: Literal[EventType.DWELL]
    item_id: Id
    dwell_ms: Count


class ShopperEventIn(_ShopperEventFields):
    """A list served (`impression`) or a search: about the shopper, not one item."""

    type: Literal[EventType.IMPRESSION, EventType.SEARCH]
    item_id: Id | None = None


class StockChangeIn(_EventFields):
    """The item's new stock level (absolute; 0 = sold out)."""

    type: Literal[EventType.STOCK_CHANGE]
    item_id: Id
    quantity: Annotated[Count, Field(description="the new stock level")]


class PriceChangeIn(_EventFields):
    """The item's new unit price."""

    type: Literal[EventType.PRICE_CHANGE]
    item_id: Id
    price: Money


class ItemUpsertIn(_EventFields):
    """The item's new catalog record (its id is the item's `item_id`)."""

    type: Literal[EventType.ITEM_UPSERT]
    item: ItemIn

    def _item(self) -> Item | None:
        return self.item.to_domain()


EventIn = Annotated[
    InteractionIn | DwellIn | ShopperEventIn | StockChangeIn | PriceChangeIn | ItemUpsertIn,
    Field(discriminator="type"),
]
EVENT = TypeAdapter[EventIn](EventIn)

# The fields every event needs; any other missing field is one its type needs.
_COMMON_REQUIRED = frozenset({"event_id", "type", "ts"})


def parse_event(raw: Any) -> EventIn:
    """Validate one decoded JSON value as an event, or raise InvalidEvent with the reasons:
    the models' rules, then `check_edge`'s."""
    try:
        event = EVENT.validate_python(raw)
    except ValidationError as exc:
        raise InvalidEvent(validation_reasons(exc, tagged=True)) from None
    if problems := check_edge(raw, event):
        raise InvalidEvent(problems)
    return event


def decode_event(value: bytes) -> Event:
    """Decode one stream record into a domain event, or raise InvalidEvent."""
    try:
        return EVENT.validate_json(value).to_domain()
    except ValidationError as exc:
        raise InvalidEvent(validation_reasons(exc, tagged=True)) from None


def encode_event(event: EventIn) -> bytes:
    return event.model_dump_json(exclude_none=True, exclude_defaults=True).encode()


def validation_reasons(exc: ValidationError, tagged: bool = False) -> list[str]:
    """One line per error: the field's path and what is wrong. `tagged`: errors of the
    event union, whose paths start with the variant's tag (the event's type)."""
    reasons = []
    for err in exc.errors(include_url=False, include_input=False):
        loc, msg = list(err["loc"]), _message(err["type"], str(err["msg"]))
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["type"]
        elif tagged and loc:
            tag = loc.pop(0)
            if err["type"] == "missing" and len(loc) == 1 and loc[0] not in _COMMON_REQUIRED:
                msg = f"{tag} needs '{loc[0]}'"
        where = ".".join(str(p) for p in loc)
        reasons.append(printable(f"{where}: {msg}" if where else msg))
    return reasons


def _message(kind: str, msg: str) -> str:
    if kind == "string_unicode":  # pydantic-core met a lone surrogate
        return NOT_UNICODE
    return msg
