"""`GET /readyz`: whether this process's dependencies work, one check each.

`/healthz` is the liveness probe (the process answers: do not restart it); `/readyz` is
the readiness probe: each dependency's check (the stream delivering, the cache reachable,
the processor keeping up where one runs), 200 when all pass, else 503 with each failing
check's reason. A 503 here takes the process out of a load balancer's rotation; pages it
still gets are answered all the same (README, "Readiness and faults").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shopper.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_write_failures = ThrottledLog(log)
RETRY_AFTER_S = 1

# A check: None when the dependency works, else why not (one line, for people).
Check = Callable[[], str | None]

READYZ_DOC = (
    "Each dependency's check: `ok` and, when not, its `reason`. 200 when every check "
    "passes, else 503: the stream not delivering (broker away, topics missing, records "
    "stuck), the cache unreachable (pages answered from the API's copy), the processor "
    "behind."
)


def readiness_router(checks: Mapping[str, Check]) -> APIRouter:
    """The `/readyz` route over `checks` (name -> check)."""
    router = APIRouter()

    @router.get(
        "/readyz",
        responses={200: {"description": READYZ_DOC}, 503: {"description": READYZ_DOC}},
    )
    def readyz() -> JSONResponse:
        """Readiness: each dependency checked now; 503 while any is not ready."""
        body = readiness_report(checks)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    return router


def readiness_report(checks: Mapping[str, Check]) -> dict[str, Any]:
    """Every check run; a check that raises counts as not ready, its error the reason."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            reason = check()
        except Exception as exc:  # a probe must answer, whatever the dependency does
            reason = f"{type(exc).__name__}: {exc}"
        results[name] = {"ok": reason is None, **({"reason": reason} if reason else {})}
    ready = all(r["ok"] for r in results.values())
    return {"status": "ready" if ready else "not ready", "ready": ready, "checks": results}


def lag_check(lag: Callable[[], Mapping[Any, int]], max_lag: int) -> Check:
    """The processors of this process at most `max_lag` records behind in all."""

    def check() -> str | None:
        behind = sum(lag().values())
        if behind > max_lag:
            return f"processor {behind} records behind (more than {max_lag})"
        return None

    return check


def write_unavailable(exc: Exception) -> JSONResponse:
    """The 503 for a write a dependency could not take (logged with backoff): the JSON
    reason, and when to retry. Events of the batch published before the failure may be
    in the stream already; sent again, they are applied once (by `event_id`)."""
    _write_failures.failure("a write could not be taken")
    reason = f"{type(exc).__name__}: {exc}"
    body = {
        "detail": f"the write could not be taken ({reason}); retry after {RETRY_AFTER_S} s "
        "(GET /readyz says which dependency is down)"
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
