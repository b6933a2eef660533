"""Hijacked connections: attach and exec start become raw two-way pipes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.protocol.conftest import Client, FakeEngine, read_request

Connect = Callable[[], Awaitable[Client]]

START_BODY = b'{"Detach":false,"Tty":false}'
UPGRADE = (
    b"POST /v1.41/exec/abc/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(START_BODY), START_BODY)
)


async def test_upgrade_hijack_pipes_both_ways_with_half_close(
    engine: FakeEngine, connect: Connect
) -> None:
    async def cat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        stdin = await reader.read()  # until the client's half-close arrives
        writer.write(b"got:" + stdin)
        await writer.drain()
        # then the engine closes: the client's read must end

    engine.handler = cat
    client = await connect()
    # stdin bytes sent before the engine answered must not be lost
    client.writer.write(UPGRADE + b"early ")
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    client.writer.write(b"late")
    client.writer.write_eof()
    assert await asyncio.wait_for(client.reader.read(), 5) == b"got:early late"


async def test_legacy_raw_stream_hijack_on_attach(engine: FakeEngine, connect: Connect) -> None:
    async def attach(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
        writer.write(b"output\n")
        await writer.drain()
        line = await reader.readline()
        writer.write(b"echo:" + line)
        await writer.drain()

    engine.handler = attach
    client = await connect()
    client.writer.write(b"POST /containers/c/attach?stream=1&stdin=1 HTTP/1.1\r\n\r\n")
    await client.reader.readuntil(b"\r\n\r\n")
    assert await asyncio.wait_for(client.reader.readline(), 5) == b"output\n"
    client.writer.write(b"input\n")
    assert await asyncio.wait_for(client.reader.read(), 5) == b"echo:input\n"


async def test_engine_output_written_before_start_returns_is_not_lost(
    engine: FakeEngine, connect: Connect
) -> None:
    """docker run attaches first; output that arrives with the 101 must reach the client."""

    async def quick(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
            b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
        )

    engine.handler = quick
    client = await connect()
    client.writer.write(
        b"POST /v1.41/containers/c/attach?stream=1&stdout=1 HTTP/1.1\r\n"
        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    data = await asyncio.wait_for(client.reader.read(), 5)
    assert data.endswith(b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n")


async def test_hijack_on_an_endpoint_that_cannot_hijack_is_cut(
    engine: FakeEngine, connect: Connect
) -> None:
    async def rogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nraw bytes")
        await asyncio.sleep(1)

    engine.handler = rogue
    client = await connect()
    client.writer.write(b"GET /v1.41/containers/json HTTP/1.1\r\n\r\n")
    # An until-close body is relayed, but the client's bytes never reach the engine as a pipe.
    data = await asyncio.wait_for(client.reader.read(), 5)
    assert data == b"HTTP/1.1 200 OK\r\n\r\nraw bytes"
