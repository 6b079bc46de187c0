"""Commands written to Redis in one round trip, bypassing redis-py's pipeline object.

The processor sends thousands of small commands a micro-batch. redis-py's pipeline keeps
per-command bookkeeping (option parsing, response callbacks) that cost it two to three
times what the commands themselves take to pack, send and read (a list write: ~20 µs of
CPU through the pipeline, ~6 µs here). And its transactional pipeline sends one
transaction per round trip, where the processor's state needs many short ones.

Replies come back as Redis sent them: bytes, integers, lists; nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

Command = tuple[str | bytes | int | float, ...]


def run_transactions(
    client: redis.Redis, transactions: Sequence[Sequence[Command]]
) -> list[list[Any]]:
    """Each command list as one MULTI/EXEC, all written at once; the replies per
    transaction. Each stays atomic and, since Redis runs one at a time, as short as it
    is (a page read sharing that Redis waits for one, not all); Redis runs them in the
    order sent, so a connection cut part-way lands whole transactions, in order, up to
    the cut. The first error raises. Never retried: a transaction whose reply was lost
    may have landed, and sending it again would apply it twice; the caller's retry
    must know what landed (the processor's: event ids)."""
    framed = [c for t in transactions for c in (("MULTI",), *t, ("EXEC",))]
    return _round_trip(
        client, framed, lambda conn: [_read_exec(conn, len(t)) for t in transactions]
    )


def run_commands(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """The commands written at once, outside any transaction; their replies in order.
    The first error raises."""
    return _round_trip(client, commands, lambda conn: [conn.read_response() for _ in commands])


def _round_trip(
    client: redis.Redis, commands: Sequence[Command], read: Callable[[Any], list[Any]]
) -> list[Any]:
    if not commands:
        return []
    pool = client.connection_pool
    conn: Any = pool.get_connection()  # redis-py's connection methods are untyped
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        return read(conn)
    except BaseException:
        conn.disconnect()  # replies may be left unread: the connection cannot be reused
        raise
    finally:
        pool.release(conn)


def _read_exec(conn: Any, size: int) -> list[Any]:
    conn.read_response()  # MULTI's OK
    for _ in range(size):
        conn.read_response()  # QUEUED; a refused command raises here (and EXEC aborts)
    replies: list[Any] = conn.read_response()
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies
