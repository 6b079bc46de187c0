"""Commands and transactions written to Redis in one round trip (`adapters.redis_wire`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shopper.adapters.redis_cache import RedisRecommendationCache
from shopper.adapters.redis_wire import run_commands, run_transactions
from shopper.adapters.system_clock import SystemClock
from shopper.domain.recommendation import RecommendationList, ScoredItem, Source
from shopper.ports.cache import ListKey

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


def test_a_batch_of_lists_is_one_round_trip_of_short_transactions(client: redis.Redis) -> None:
    cache = RedisRecommendationCache(client, SystemClock(), 60.0, 600.0, prefix="w:")
    keys = [ListKey(f"u:{n}", "champion") for n in range(250)]
    one = (ScoredItem("a", 1.0),)
    lists = [
        (key, RecommendationList(one, "champion", Source.PERSONALIZED, 0.0, f"l{n}"))
        for n, key in enumerate(keys)
    ]
    client.ping()
    conn = client.connection_pool.get_connection()
    sent: list[bytes] = []
    original = conn.send_packed_command

    def counting(command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        original(command, check_health)

    conn.send_packed_command = counting  # type: ignore[method-assign]
    client.connection_pool.release(conn)
    cache.write_lists(lists)
    assert len(sent) == 1
    assert sent[0].count(b"MULTI") == 3  # 100, 100 and 50 lists
    page = cache.read_page(keys[-1], [])
    assert page.fresh is not None and page.fresh.list_id == "l249"
