"""The allocator `shopper serve` starts itself on: glibc's malloc where the process holds the
shop's state (the embedded mode), CPython's where Redis does, and always the caller's when
the environment names one."""

from __future__ import annotations

import pytest

from shopper.allocator import allocator_to_start
from shopper.config import load_config


@pytest.mark.parametrize(
    ("stream_url", "cache_url", "expected"),
    [
        ("memory://", "memory://", "malloc"),
        ("memory://", "redis://127.0.0.1:6379/0", "malloc"),  # the stream's records, in here
        ("kafka://127.0.0.1:9092", "memory://", "malloc"),
        ("kafka://127.0.0.1:9092", "redis://127.0.0.1:6379/0", None),
    ],
)
def test_the_embedded_mode_runs_on_glibc_malloc(
    stream_url: str, cache_url: str, expected: str | None
) -> None:
    config = load_config({}, stream_url=stream_url, cache_url=cache_url)
    assert allocator_to_start(config, {}) == expected


@pytest.mark.parametrize("named", ["pymalloc", "malloc", "pymalloc_debug"])
def test_an_allocator_named_in_the_environment_is_kept(named: str) -> None:
    config = load_config({})
    assert allocator_to_start(config, {"PYTHONMALLOC": named}) is None
