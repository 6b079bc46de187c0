"""Shared pytest setup. Service fixtures (Kafka broker, Redis) live in tests/fixtures/."""

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.redis",
    "tests.fixtures.kafka",
    "tests.fixtures.flagd_sync",
]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One BLAS and OpenMP thread, as `make` sets: implicit's ALS uses every core by default
    (and warns), and on a few dozen shoppers on a busy machine that is a hundred times
    slower. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    # Imported up front, so no test is timed with the libraries' import.
    import implicit.als  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401

    with threadpool_limits(1):
        yield
