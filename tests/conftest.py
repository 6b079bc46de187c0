"""Shared pytest setup. Service fixtures (Kafka broker, Redis) live in tests/fixtures/."""

import os
from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.redis",
    "tests.fixtures.kafka",
    "tests.fixtures.flagd_sync",
]


@pytest.fixture(scope="session", autouse=True)
def own_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads the checkout's data folder (`.shopper`, where `make demo` and `make
    serve` keep their keys, trained models and flags) or a developer's `SHOPPER_` settings:
    what a test does not set itself comes from the defaults, with a data folder of the
    session's own (a model the demo promoted there made pages `popular` rather than
    `personalized`). Servers the tests start inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SHOPPER_")]:
            patch.delenv(name)
        data_dir = tmp_path_factory.mktemp("shopper-data")
        patch.setattr("shopper.config.DATA_DIR", data_dir)  # configs the tests make
        patch.setenv("SHOPPER_DATA_DIR", str(data_dir))  # servers they start
        yield


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
