"""Shared pytest setup. Service fixtures (Kafka broker, Redis) live in tests/fixtures/."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.redis", "tests.fixtures.kafka"]
