"""Who may call what (README, "Keys"): `Authorization: Bearer KEY`, compared in constant
time against the admin token, the ingest key and the read key.

- Catalog writes, and catalog event types (`item_upsert`, `stock_change`, `price_change`)
  on `POST /v1/events`: the admin token.
- Behaviour events: the ingest key, or the admin token.
- Reads: open, unless a read key is set; then the read key or the admin token.

No key, or one that is none of these: 401 with `WWW-Authenticate: Bearer`. A key of the
wrong kind: 403. Both are decided before the body is read or anything is published. Every
write made with the admin token is audited: one JSON line on the `shopper.audit` logger.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from shopper.domain.event import CATALOG_TYPES
from shopper.keys import ApiKeys

AUDIT_LOGGER = "shopper.audit"
AUDIT_MAX_ITEMS = 20  # item ids named per audit line; the count says how many there were
AUDIT_MAX_ID_CHARS = 64
CATALOG_TYPE_NAMES = frozenset(t.value for t in CATALOG_TYPES)
BEARER = b"bearer "
KEYS_DOC = 'README, "Keys"'

audit_log = logging.getLogger(AUDIT_LOGGER)

# Documents the scheme in the OpenAPI schema (the docs page's "Authorize"); the check
# itself is `Guard`'s.
bearer_scheme = HTTPBearer(auto_error=False, description=f"an API key ({KEYS_DOC})")
BEARER_DOC = Security(bearer_scheme)


class KeyKind(StrEnum):
    ADMIN = "admin"
    INGEST = "ingest"
    READ = "read"


class Guard:
    """Tells a request's key kind, and answers 401 or 403 for the routes."""

    def __init__(self, keys: ApiKeys) -> None:
        known = [(KeyKind.ADMIN, keys.admin), (KeyKind.INGEST, keys.ingest)]
        if keys.read is not None:
            known.append((KeyKind.READ, keys.read))
        self._known = [(kind, key.encode()) for kind, key in known]
        # The page's fast path compares whole header values (api/page_route.py); None:
        # reads are open.
        self.read_headers: tuple[bytes, ...] | None = (
            None
            if keys.read is None
            else (b"Bearer " + keys.read.encode(), b"Bearer " + keys.admin.encode())
        )

    def kind_of(self, authorization: str | None) -> KeyKind | None:
        """The kind of the request's bearer key; None when it has none or an unknown one.
        Every known key is compared, so the time taken does not tell which one matched."""
        if not authorization:
            return None
        raw = authorization.encode("latin-1", "replace")
        if raw[: len(BEARER)].lower() != BEARER:
            return None
        token = raw[len(BEARER) :].strip()
        found = None
        for kind, key in self._known:
            if hmac.compare_digest(token, key) and found is None:
                found = kind
        return found

    def request_kind(self, request: Request) -> KeyKind | None:
        return self.kind_of(request.headers.get("authorization"))

    def writer(self, request: Request) -> KeyKind:
        """The kind of a write's key: 401 without a known one, 403 for the read key."""
        kind = self.request_kind(request)
        if kind is None:
            raise unauthorized(request)
        if kind is KeyKind.READ:
            raise forbidden("the read key cannot write: events need the ingest key, "
                            "catalog changes the admin token")  # fmt: skip
        return kind

    def admin(self, request: Request) -> KeyKind:
        """The admin token, else 401 or 403."""
        kind = self.writer(request)
        if kind is not KeyKind.ADMIN:
            raise forbidden("catalog writes need the admin token, not the ingest key")
        return kind

    def reader(self, request: Request) -> None:
        """Reads: open, or the read key or admin token (401 or 403 else)."""
        if self.read_headers is None:
            return
        kind = self.request_kind(request)
        if kind is None:
            raise unauthorized(request)
        if kind is KeyKind.INGEST:
            raise forbidden("reads need the read key (or the admin token), not the ingest key")

    def dependency(self, check: Callable[[Request], Any]) -> Any:
        """`check` as a FastAPI dependency, documented as bearer authentication."""

        def depend(request: Request, _: Any = BEARER_DOC) -> Any:
            return check(request)

        return depend


def catalog_types_of(events: list[Any]) -> list[str]:
    """The catalog event types in a raw batch (what the ingest key may not post)."""
    # A type that is not a string is no catalog type (validation rejects it).
    types = (e.get("type") for e in events if isinstance(e, dict))
    return sorted({t for t in types if isinstance(t, str) and t in CATALOG_TYPE_NAMES})


def ingest_forbidden(events: list[Any]) -> JSONResponse | None:
    """403 for an ingest key posting catalog events; None when the batch is behaviour."""
    found = catalog_types_of(events)
    if not found:
        return None
    detail = (
        f"{', '.join(found)} events change the catalog: they need the admin token, not the "
        "ingest key; nothing of this batch was accepted"
    )
    return JSONResponse({"detail": detail}, status_code=403)


def unauthorized(request: Request) -> HTTPException:
    given = request.headers.get("authorization")
    if given:
        detail = f"unknown API key: send Authorization: Bearer KEY with a valid key ({KEYS_DOC})"
        challenge = 'Bearer error="invalid_token"'
    else:
        detail = f"an API key is needed: send Authorization: Bearer KEY ({KEYS_DOC})"
        challenge = "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def forbidden(detail: str) -> HTTPException:
    return HTTPException(403, detail)


def audit_write(
    request: Request, kind: KeyKind, events: list[Any], status: int, accepted: int
) -> dict[str, Any]:
    """Log one admin write on `shopper.audit` (the flag audit's style: `at`, `action`,
    `by`); returns the entry. Never the key: `by` is its kind."""
    types = Counter(str(e.get("type")) for e in events if isinstance(e, dict))
    items = [i for i in map(_item_id, events) if i is not None]
    client = request.client
    entry: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "action": f"{request.method} {request.url.path}",
        "by": kind.value,
        "client": f"{client.host}:{client.port}" if client else None,
        "events": len(events),
        "types": dict(sorted(types.items())),
        "items": [i[:AUDIT_MAX_ID_CHARS] for i in items[:AUDIT_MAX_ITEMS]],
        "items_total": len(items),
        "accepted": accepted,
        "status": status,
    }
    # json.dumps escapes control characters: a hostile id cannot forge a log line.
    audit_log.info(json.dumps(entry), extra={"audit": entry})
    return entry


def _item_id(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    item = event.get("item")
    found = item.get("item_id") if isinstance(item, dict) else event.get("item_id")
    return found if isinstance(found, str) else None
