"""A repeating failure is logged with backoff: the first with its traceback, repeats as one
line at most once per (doubling) interval, counting those held back."""

from __future__ import annotations

import logging

import pytest

from shopper.throttled_log import RepeatFilter, ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(failures: ThrottledLog) -> None:
    try:
        raise ConnectionError("refused")
    except ConnectionError:
        failures.failure("Redis read failed")


def test_a_failure_every_100_ms_for_a_minute_logs_a_handful_of_lines(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = ThrottledLog(logging.getLogger("t"), 1.0, 16.0, clock)
    with caplog.at_level(logging.ERROR, "t"):
        for _ in range(600):
            fail(failures)
            clock.now += 0.1
    records = caplog.records
    # At 0 s, then after 1, 2, 4, 8, 16, 16, 16 s: never a line a second.
    assert 6 <= len(records) <= 9
    assert records[0].exc_info is not None  # the first one with its traceback
    assert all(r.exc_info is None for r in records[1:])
    assert "ConnectionError: refused" in records[1].getMessage()
    assert "more since" in records[-1].getMessage()
    assert failures.failures == 600


def test_recovery_is_logged_once_and_the_next_failure_is_logged_at_once(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = ThrottledLog(logging.getLogger("t"), clock=clock)
    with caplog.at_level(logging.WARNING, "t"):
        fail(failures)
        fail(failures)
        failures.recovered("back")
        failures.recovered("back")
        fail(failures)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Redis read failed", "back", "Redis read failed"]
    assert caplog.records[2].exc_info is not None


def test_a_quiet_spell_starts_a_new_streak(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    failures = ThrottledLog(logging.getLogger("t"), 1.0, clock=clock)
    with caplog.at_level(logging.ERROR, "t"):
        fail(failures)
        clock.now += 10.0  # no failure for longer than twice the interval
        fail(failures)
    assert [r.exc_info is not None for r in caplog.records] == [True, True]


def test_a_percent_sign_in_the_error_does_not_break_the_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = ThrottledLog(logging.getLogger("t"), 1.0, clock=clock)
    with caplog.at_level(logging.ERROR, "t"):
        for _ in range(2):
            try:
                raise ValueError("100% full")
            except ValueError:
                failures.failure("spool %s", "a")
            clock.now += 1.5
    assert "100% full" in caplog.records[1].getMessage()


def test_without_traceback_the_first_line_says_the_error_and_formats_no_traceback(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = ThrottledLog(logging.getLogger("t"), clock=clock)
    with caplog.at_level(logging.ERROR, "t"):
        try:
            raise TimeoutError("Timeout reading from 127.0.0.1:6379")
        except TimeoutError:
            failures.failure("page read failed", traceback=False)
    (record,) = caplog.records
    assert record.exc_info is None
    assert (
        record.getMessage()
        == "page read failed (TimeoutError: Timeout reading from 127.0.0.1:6379)"
    )


def test_a_line_repeated_by_a_client_library_passes_once_per_interval(clock: Clock) -> None:
    passed: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            passed.append(record.getMessage())

    logger = logging.getLogger("t.repeat")
    logger.propagate = False
    logger.addHandler(Keep())
    logger.addFilter(RepeatFilter(30.0, clock))
    refused = "[thrd:b]: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
    for _ in range(200):  # 20 a second for 10 s
        logger.error("%s [%s] %s", "FAIL", "rdkafka#producer-1", refused)
        clock.now += 0.05
    logger.error("%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "another kind")
    clock.now += 30.0
    logger.error("%s [%s] %s", "FAIL", "rdkafka#producer-1", refused)
    assert len(passed) == 3
    assert passed[1].startswith("CONFWARN")
    assert passed[2].endswith("(199 more like it held back)")
