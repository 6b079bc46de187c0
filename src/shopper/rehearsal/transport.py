"""A lean HTTP/1.1 transport for httpx: keep-alive connections on asyncio streams.

httpx's own pool (httpcore over anyio) costs the rehearsal about 2 ms of CPU per request
on a 2-core machine, and more the more connections it holds: a load generator at a few
hundred requests a second would then measure its own queue as the server's latency. This
transport does only what the rehearsal needs (plain `http://`, one request per connection
at a time, Content-Length or chunked bodies) at a fraction of that, behind httpx's API, so
the driver and its tests (`httpx.MockTransport`) are unchanged.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import httpx

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
DEFAULT_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024


class LeanTransport(httpx.AsyncBaseTransport):
    """Reuses idle connections; opens one more when none is idle. The callers bound how
    many requests run at once (the driver's semaphore), so the pool needs no limit."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"the rehearsal speaks http:// only: {request.url}")
        timeouts = request.extensions.get("timeout", {})
        limit = timeouts.get("read") or DEFAULT_TIMEOUT_S
        payload = _serialise(request, await request.aread())
        address = (request.url.host, request.url.port or 80)
        idle = self._idle.setdefault(address, [])
        while idle:  # a reused connection the server may have closed: one more try
            conn = idle.pop()
            with suppress(httpx.RemoteProtocolError):
                return await self._exchange(conn, payload, request, limit, idle)
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(*address), limit)
        except (OSError, TimeoutError) as exc:
            raise httpx.ConnectError(f"{exc or type(exc).__name__}", request=request) from None
        return await self._exchange(conn, payload, request, limit, idle)

    async def _exchange(
        self,
        conn: Connection,
        payload: bytes,
        request: httpx.Request,
        limit: float,
        idle: list[Connection],
    ) -> httpx.Response:
        reader, writer = conn
        try:
            writer.write(payload)
            async with asyncio.timeout(limit):
                status, headers, body, reusable = await _read_response(reader)
        except TimeoutError:
            writer.close()
            raise httpx.ReadTimeout(f"no answer within {limit:g} s", request=request) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.close()
            raise httpx.RemoteProtocolError("the connection broke", request=request) from None
        if reusable:
            idle.append(conn)
        else:
            writer.close()
        return httpx.Response(status, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
                with suppress(OSError):
                    await writer.wait_closed()
        self._idle.clear()


def _serialise(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1".encode()]
    for name, value in request.headers.raw:
        if name.lower() == b"accept-encoding":
            continue  # bodies are read as sent: ask for them uncompressed
        lines.append(name + b": " + value)
    if body and "content-length" not in request.headers:
        lines.append(b"content-length: " + str(len(body)).encode())
    lines.append(b"accept-encoding: identity")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """Status, headers, body, and whether the connection can carry another request."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("response head too large")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    fields = dict(headers)
    keep = fields.get(b"connection", b"").lower() != b"close"
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _chunks(reader)
        return status, [h for h in headers if h[0] != b"transfer-encoding"], body, keep
    if b"content-length" in fields:
        return status, headers, await reader.readexactly(int(fields[b"content-length"])), keep
    return status, headers, await reader.read(), False  # the server closes to end the body


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
