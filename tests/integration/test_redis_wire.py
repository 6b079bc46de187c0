"""Commands and transactions written to Redis in one round trip (`adapters.redis_wire`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from shopper.adapters.redis_wire import run_commands, run_transactions

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def test_replies_come_back_in_order_as_redis_sent_them(client: redis.Redis) -> None:
    replies = run_commands(client, [("SET", "w:a", b"1"), ("INCRBY", "w:a", 2), ("GET", "w:a")])
    assert replies == [b"OK", 3, b"3"]
    assert run_commands(client, []) == []


def test_each_transaction_replies_with_its_commands_replies(client: redis.Redis) -> None:
    replies = run_transactions(
        client, [[("SET", "w:b", b"x"), ("APPEND", "w:b", b"y")], [("STRLEN", "w:b")]]
    )
    assert replies == [[b"OK", 2], [2]]


def test_an_error_raises_and_the_next_round_trip_still_works(client: redis.Redis) -> None:
    client.set("w:text", b"not a number")
    with pytest.raises(redis.ResponseError):
        run_transactions(client, [[("SET", "w:c", b"1")], [("INCR", "w:text")], [("DEL", "w:c")]])
    # Redis ran the transactions it was sent, in order; only the failed command did nothing.
    assert client.get("w:c") is None
    with pytest.raises(redis.ResponseError):
        run_commands(client, [("NOSUCHCOMMAND",), ("SET", "w:d", b"1")])
    assert run_commands(client, [("GET", "w:c"), ("PING",)]) == [None, b"PONG"]
