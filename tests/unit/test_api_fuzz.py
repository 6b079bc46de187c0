"""Schemathesis against the API's own OpenAPI document: every operation, valid and invalid
requests generated from the schema, every check schemathesis has. No request may answer
5xx, and every answer must conform to the schema (status, content type, body, headers)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.core.result import Ok

from shopper.bootstrap import System, build_system
from shopper.config import load_config
from tests.helpers import keyed
from tests.unit.factories import in_catalog

# Examples per operation and mode: enough for >= 1,000 requests over the API's operations
# in well under a minute on one core.
EXAMPLES = 100
MIN_REQUESTS = 1_000


@pytest.fixture
def system() -> Iterator[System]:
    # Generated timestamps span years 1-9999: an event from the future is refused (422) by
    # design (max_event_skew_s), which the schema cannot state; here any time is taken, so
    # a valid-by-schema event is accepted.
    config = load_config({}, max_event_skew_s=1e12, microbatch_wait_s=0, popular_refresh_s=0)
    built = build_system(config)
    in_catalog(built.state)
    yield built
    built.close()


def test_every_operation_answers_by_its_schema_under_fuzzing(system: System) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", system.app())
    load_all_checks()
    checks = cast(list[CheckFunction], CHECKS.get_all())  # every check there is
    headers = keyed(system)
    statuses: Counter[int] = Counter()
    took: dict[str, float] = {}

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()
        raw = operation.definition.raw
        # An operation with neither parameters nor a body has no invalid request to make.
        negatable = bool(raw.get("parameters")) or "requestBody" in raw
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        for mode in modes:
            started = time.perf_counter()

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Case[Any]) -> None:
                response = case.call(headers=headers)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=checks, headers=headers)

            fuzz()
            took[f"{operation.label} {mode.value}"] = time.perf_counter() - started

    requests = sum(statuses.values())
    print(f"{requests} requests, by status {dict(statuses)}; seconds by operation {took}")
    server_errors = {s: n for s, n in statuses.items() if s >= 500}
    assert requests >= MIN_REQUESTS, f"only {requests} requests generated"
    assert server_errors == {}, f"5xx answers: {server_errors}"
