"""Shutdown: stop accepting, let requests in flight finish within the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from sockproxy.server import Server
from tests.protocol.conftest import FakeEngine, read_request, response, start_proxy


async def slow_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(0.3)
    writer.write(response(b"late but whole"))
    await writer.drain()


async def start(sockdir: Path, engine: FakeEngine) -> tuple[Server, str]:
    server = await start_proxy(sockdir / "proxy.sock", engine.path)
    return server, server.listeners[0].path


async def test_in_flight_request_finishes_and_new_connections_are_refused(
    sockdir: Path, engine: FakeEngine
) -> None:
    engine.handler = slow_answer
    server, path = await start(sockdir, engine)
    reader, writer = await asyncio.open_unix_connection(path)
    idle_reader, idle_writer = await asyncio.open_unix_connection(path)
    writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.05)  # the request is with the engine now
    shutdown = asyncio.ensure_future(server.shutdown(grace=5.0))
    await asyncio.sleep(0.05)
    # the socket file is gone: nobody new gets in
    assert not await asyncio.to_thread(os.path.exists, path)
    assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # idle keep-alive closed
    head, body = await read_request(reader)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"late but whole"
    assert await asyncio.wait_for(reader.read(), 2) == b""  # then closed
    await asyncio.wait_for(shutdown, 5)
    writer.close()
    idle_writer.close()


async def test_grace_period_bounds_a_stream_that_never_ends(
    sockdir: Path, engine: FakeEngine
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"2\r\nx\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    engine.handler = endless
    server, path = await start(sockdir, engine)
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"GET /v1.41/events HTTP/1.1\r\n\r\n")
    await reader.readuntil(b"x\n")
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(server.shutdown(grace=0.3), 5)
    assert asyncio.get_running_loop().time() - started < 2
    # the stream is cut: the client's read ends (what was buffered drains first)
    assert await asyncio.wait_for(drain_to_end(reader), 2) >= 0
    writer.close()


async def drain_to_end(reader: asyncio.StreamReader) -> int:
    total = 0
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            total += len(data)
    return total
