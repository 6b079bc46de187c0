"""Where events enter (the API, files): what JSON from a client can hold and the codec's
models, lax for the stream's sake, would let pass. Checked by `codec.parse_event`, not on
the processor's decode path, where records come from `encode_event` (UTF-8 JSON: no lone
surrogate can even be parsed there), so decoding stays as fast."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopper.codec import EventIn, ItemIn

MAX_EPOCH_S = 2e10  # above it pydantic would read milliseconds
NUMERIC = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
NOT_UNICODE = "not valid Unicode text (a lone surrogate such as \\ud800?)"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_NUMBERS = ("price", "quantity", "dwell_ms", "position")
_IDS = ("event_id", "user_id", "session_id", "item_id", "list_id", "variant")
_TEXTS = ("query",)
_CONTROL_IN_ID = "ids and keys cannot hold control characters (NUL, CR, LF, ...)"


def check_edge(raw: dict[str, Any], event: EventIn) -> list[str]:
    """What the schema says and the models let pass: JSON numbers only (not `true` or
    "3"), `ts` an ISO 8601 string or epoch seconds in [0, 2e10), ids and keys without
    control characters, and every text valid Unicode that UTF-8 can carry (a lone
    surrogate could be neither published nor answered). One reason per field."""
    problems = [f"{n}: Input should be a number" for n in _NUMBERS if _not_number(raw.get(n))]
    if (when := _time_problem(raw.get("ts"))) is not None:
        problems.append(f"ts: {when}")
    texts = _event_texts(event)
    if (item := getattr(event, "item", None)) is not None:  # an item_upsert
        raw_item = raw.get("item") or {}
        bad = [n for n in ("price", "stock") if _not_number(raw_item.get(n))]
        problems += [f"item.{n}: Input should be a number" for n in bad]
        texts += _item_texts(item)
    for where, text, key in texts:
        if text is None:
            continue
        if not _encodable(text):
            problems.append(f"{where}: {NOT_UNICODE}")
        elif key and _CONTROL.search(text):
            problems.append(f"{where}: {_CONTROL_IN_ID}")
    return [printable(p) for p in problems]


# (where, the text, whether it is an id or key)
_Texts = list[tuple[str, str | None, bool]]


def _event_texts(event: EventIn) -> _Texts:
    context = event.context
    return [
        *((n, getattr(event, n, None), True) for n in _IDS),
        *((n, getattr(event, n), False) for n in _TEXTS),
        ("context.device", context.device, True),
        ("context.country", context.country, True),
        ("context.referrer", context.referrer, False),
        ("context.page", context.page, False),
    ]


def _item_texts(item: ItemIn) -> _Texts:
    texts: _Texts = [
        ("item.item_id", item.item_id, True),
        ("item.title", item.title, False),
        ("item.brand", item.brand, False),
    ]
    texts += [(f"item.category.{n}", c, False) for n, c in enumerate(item.category)]
    for name, value in item.attributes.items():
        texts += [
            (f"item.attributes.{name}", name, False),
            (f"item.attributes.{name}", value, False),
        ]
    return texts


def _not_number(value: Any) -> bool:
    return isinstance(value, bool | str)


def _time_problem(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, str) and NUMERIC.fullmatch(value)):
        return "a date-time string (ISO 8601 with a time zone) or epoch seconds as a number"
    if isinstance(value, int | float) and not 0 <= value < MAX_EPOCH_S:
        return f"epoch seconds are between 0 and {MAX_EPOCH_S:.0e}"
    return None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """An error may quote the input (an unknown type tag): a lone surrogate in it must not
    make the answer itself unencodable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
