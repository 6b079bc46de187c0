"""The stored list format: one bytes value per recommendation list, as Redis keeps it.

Header, variant, list id, float32 scores, then length-prefixed item ids and a trailer that
says who made the list (docs/redis-keys.md). The page's Lua script reads the sold-out
ids of a list with the same layout, so a change here is a new `FORMAT_VERSION`.
"""

from __future__ import annotations

import struct
from collections.abc import Container

from shopper.domain.recommendation import RecommendationList, ScoredItem, Source

FORMAT_VERSION = 1
# version, source, written_at, generated_at, item count, variant length, list_id length
HEADER = struct.Struct("<BBddHHH")
_WRITTEN_AT = struct.Struct("<d")
_SOURCES = tuple(Source)  # the stored source byte indexes this tuple: append only
_MAX_ID_BYTES = 1 << 14  # two varint bytes


def encode_list(ranked: RecommendationList, written_at: float) -> bytes:
    """Header, variant, list id, float32 scores, then varint-length-prefixed item ids.

    Length prefixes (one byte below 128, else two) rather than a separator, so no item id
    can break the framing. About 5 + len(id) bytes per item plus ~60 for the header.
    """
    variant = ranked.variant.encode()
    list_id = ranked.list_id.encode()
    n = len(ranked.items)
    header = HEADER.pack(
        FORMAT_VERSION,
        _SOURCES.index(ranked.source),
        written_at,
        ranked.generated_at,
        n,
        len(variant),
        len(list_id),
    )
    scores = struct.pack(f"<{n}f", *[s.score for s in ranked.items])
    names = [s.item_id for s in ranked.items]
    if all(len(i) < 128 and i.isascii() for i in names):
        # The processor encodes a list per event: ASCII ids below 128 bytes (nearly every
        # shop's) skip the per-id encode, a one-character prefix being their length byte.
        ids = "".join([chr(len(i)) + i for i in names]).encode()
    else:
        ids = b"".join([_prefixed(i.encode()) for i in names])
    # Who made it trails the items: the page script reads only up to the last item.
    made_by = f"{ranked.tier}\x00{ranked.model}".encode() if ranked.tier or ranked.model else b""
    return b"".join((header, variant, list_id, scores, ids, made_by))


def decode_list(
    blob: bytes, visible: int | None = None, hidden: Container[str] = ()
) -> RecommendationList:
    """The stored list; with `visible`, cut after its first `visible` items not in
    `hidden` (the page needs no more, and decoding is the read's main cost)."""
    version, source, _, generated_at, n, vlen, llen = HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise ValueError(f"unknown list format version {version}")
    pos = HEADER.size
    variant = blob[pos : pos + vlen].decode()
    pos += vlen
    list_id = blob[pos : pos + llen].decode()
    pos += llen
    scores = struct.unpack_from(f"<{n}f", blob, pos)
    pos += 4 * n
    items = []
    wanted = n if visible is None else visible
    for score in scores:
        length = blob[pos]
        if length < 128:
            pos += 1
        else:
            length = (length - 128) + 128 * blob[pos + 1]
            pos += 2
        item_id = blob[pos : pos + length].decode()
        items.append(ScoredItem(item_id, score))
        pos += length
        if item_id not in hidden:
            wanted -= 1
            if wanted == 0:
                break
    if len(items) < n:  # cut short: who made it trails the last item
        pos = _made_by_at(blob, pos, n - len(items))
    tier, _, model = blob[pos:].decode().partition("\x00")
    return RecommendationList(
        tuple(items), variant, _SOURCES[source], generated_at, list_id, tier, model
    )


def _made_by_at(blob: bytes, pos: int, skip: int) -> int:
    """Where the trailer starts, `skip` length-prefixed ids after `pos`."""
    for _ in range(skip):
        length = blob[pos]
        if length < 128:
            pos += 1 + length
        else:
            pos += 2 + (length - 128) + 128 * blob[pos + 1]
    return pos


def _prefixed(raw: bytes) -> bytes:
    size = len(raw)
    if size < 128:
        return bytes((size,)) + raw
    if size >= _MAX_ID_BYTES:
        raise ValueError(f"item id of {size} bytes is too long to store")
    return bytes((128 + (size & 127), size >> 7)) + raw


def written_at_of(head: bytes) -> float | None:
    """When the list whose first `HEADER.size` bytes are `head` was written; None when
    there is no such list (fewer bytes)."""
    if len(head) < HEADER.size:
        return None
    (written_at,) = _WRITTEN_AT.unpack_from(head, 2)
    return float(written_at)
