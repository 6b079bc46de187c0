"""The benchmarks' cheap HTTP client (`benchmarks.http_load.RawHTTP`), which the freshness
probes read pages with and the shop traffic posts events with: bodies go and come back
whole, and a keep-alive connection the server closed meanwhile costs a retry, not a failed
request."""

from __future__ import annotations

import asyncio

from benchmarks.http_load import RawHTTP


async def _server(closes_after_each: bool) -> tuple[asyncio.Server, list[bytes]]:
    """Answers each request with its body, or its target where it has none."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                length = next(
                    (
                        int(line[15:])
                        for line in head.split(b"\r\n")
                        if line.startswith(b"Content-Length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else head.split(b" ", 2)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if closes_after_each:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0), seen


async def _closed(client: RawHTTP, server: asyncio.Server) -> None:
    client.close()
    await asyncio.sleep(0.05)  # the server's side sees it closed
    server.close()
    await server.wait_closed()


def test_requests_carry_their_headers_and_bodies_and_answers_come_back_whole() -> None:
    async def main() -> None:
        server, seen = await _server(closes_after_each=False)
        port = server.sockets[0].getsockname()[1]
        client = RawHTTP(f"http://127.0.0.1:{port}", {"authorization": "Bearer k"})
        assert await client.get("/a?x=1", 5.0) == (200, b"/a?x=1")
        body = b'[{"event_id": "e1"}]' * 100
        assert await client.post("/v1/events", body, 5.0) == (200, body)
        assert len(seen) == 2
        assert b"authorization: Bearer k\r\n" in seen[0]
        assert seen[1].startswith(b"POST /v1/events HTTP/1.1\r\n")
        assert b"Content-Type: application/json\r\n" in seen[1]
        await _closed(client, server)

    asyncio.run(main())


def test_a_connection_the_server_closed_is_replaced_and_the_request_sent_again() -> None:
    async def main() -> None:
        server, seen = await _server(closes_after_each=True)
        port = server.sockets[0].getsockname()[1]
        client = RawHTTP(f"http://127.0.0.1:{port}")
        assert await client.get("/first", 5.0) == (200, b"/first")
        await asyncio.sleep(0.05)  # the server has closed that connection
        assert await client.get("/second", 5.0) == (200, b"/second")
        assert [head.split(b" ")[1] for head in seen] == [b"/first", b"/second"]
        await _closed(client, server)

    asyncio.run(main())
