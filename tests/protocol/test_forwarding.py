"""Faithful forwarding: what the client sends is what the engine gets, and back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from tests.protocol.conftest import Client, FakeEngine, read_request, response

Connect = Callable[[], Awaitable[Client]]


async def test_keep_alive_requests_share_one_engine_connection(
    engine: FakeEngine, connect: Connect
) -> None:
    client = await connect()
    for _ in range(5):
        client.writer.write(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        head, body = await client.response()
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"OK"
    assert engine.connections == 1
    assert len(engine.heads) == 5


async def test_engine_connections_are_reused_across_clients(
    engine: FakeEngine, connect: Connect
) -> None:
    for _ in range(3):
        client = await connect()
        client.writer.write(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        await client.response()
        client.close()
    assert engine.connections == 1


async def test_pipelined_requests_are_answered_in_order(
    engine: FakeEngine, connect: Connect
) -> None:
    async def numbered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            writer.write(response(head.split(b" ")[1]))

    engine.handler = numbered
    client = await connect()
    client.writer.write(b"GET /_ping?first HTTP/1.1\r\n\r\nGET /_ping?second HTTP/1.1\r\n\r\n")
    assert (await client.response())[1] == b"/_ping?first"
    assert (await client.response())[1] == b"/_ping?second"


async def test_headers_pass_byte_for_byte(engine: FakeEngine, connect: Connect) -> None:
    raw = (
        b"POST /v1.41/images/create?fromImage=x HTTP/1.1\r\nHost: api.moby.localhost\r\n"
        b"User-Agent: Docker-Client/28.2.2 (linux)\r\nX-Registry-Auth: eyJ1c2VybmFtZSI6ImEifQ==\r\n"
        b"Content-Length: 0\r\nx-odd-CASE:  kept as is\r\n\r\n"
    )
    client = await connect()
    client.writer.write(raw)
    await client.response()
    assert engine.heads == [raw]


async def test_response_head_passes_byte_for_byte(engine: FakeEngine, connect: Connect) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nDocker-Experimental: false\r\n"
        b"Ostype: linux\r\nContent-Length: 2\r\n\r\nOK"
    )

    async def exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await asyncio.sleep(1)

    engine.handler = exact
    client = await connect()
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    assert await client.reader.readexactly(len(reply)) == reply


async def test_chunked_request_body_is_forwarded_as_framed(
    engine: FakeEngine, connect: Connect
) -> None:
    seen = asyncio.get_running_loop().create_future()

    async def record_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.set_result(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(response())

    engine.handler = record_body
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    client = await connect()
    client.writer.write(b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert await asyncio.wait_for(seen, 5) == body
    assert (await client.response())[1] == b"OK"


async def test_large_body_streams_both_ways_intact(engine: FakeEngine, connect: Connect) -> None:
    size = 32 * 1024 * 1024
    pattern = bytes(range(256)) * (size // 256)

    async def echo_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        remaining = size
        while remaining:
            data = await reader.read(min(remaining, 1 << 16))
            remaining -= len(data)
            writer.write(data)
            await writer.drain()

    engine.handler = echo_body
    client = await connect()
    client.writer.write(
        f"PUT /containers/x/archive?path=/ HTTP/1.1\r\nContent-Length: {size}\r\n\r\n".encode()
    )

    async def upload() -> None:
        for offset in range(0, size, 1 << 20):
            client.writer.write(pattern[offset : offset + (1 << 20)])
            await client.writer.drain()

    uploading = asyncio.ensure_future(upload())
    await client.reader.readuntil(b"\r\n\r\n")
    received = await client.reader.readexactly(size)
    await uploading
    assert received == pattern


async def test_streamed_response_flows_as_the_engine_writes_it(
    engine: FakeEngine, connect: Connect
) -> None:
    more = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent1\r\n")
        await writer.drain()
        await more.wait()
        writer.write(b"6\r\nevent2\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # the connection is still usable afterwards
        writer.write(response())

    engine.handler = stream
    client = await connect()
    client.writer.write(b"GET /v1.41/events HTTP/1.1\r\n\r\n")
    await client.reader.readuntil(b"\r\n\r\n")
    assert await asyncio.wait_for(client.reader.readuntil(b"event1\r\n"), 2) == b"6\r\nevent1\r\n"
    more.set()
    assert await client.reader.readuntil(b"0\r\n\r\n") == b"6\r\nevent2\r\n0\r\n\r\n"
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    assert (await client.response())[1] == b"OK"


async def test_response_until_close_ends_the_client_connection(
    engine: FakeEngine, connect: Connect
) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")

    engine.handler = until_close
    client = await connect()
    client.writer.write(b"GET /v1.41/containers/x/logs HTTP/1.1\r\n\r\n")
    assert await asyncio.wait_for(client.reader.read(), 5) == b"HTTP/1.1 200 OK\r\n\r\nall of it"


async def test_client_gone_mid_stream_frees_the_engine_connection(
    engine: FakeEngine, connect: Connect
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\ntick\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    engine.handler = endless
    client = await connect()
    client.writer.write(b"GET /v1.41/events HTTP/1.1\r\n\r\n")
    await client.reader.readuntil(b"tick")
    client.close()
    await asyncio.wait_for(engine.closed.wait(), 5)


async def test_client_half_close_mid_stream_reaches_the_engine(
    engine: FakeEngine, connect: Connect
) -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await reader.read()  # a Go engine cancels the stream when its client ends its side
        writer.write(b"0\r\n\r\n")

    engine.handler = until_eof
    client = await connect()
    client.writer.write(b"GET /v1.41/events HTTP/1.1\r\n\r\n")
    await client.reader.readuntil(b"first\r\n")
    client.writer.write_eof()
    assert await asyncio.wait_for(client.reader.read(), 5) == b"0\r\n\r\n"


async def test_engine_closing_idle_connection_is_retried_transparently(
    engine: FakeEngine, connect: Connect
) -> None:
    async def one_request_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(extra="Keep-Alive: timeout=0\r\n"))
        await writer.drain()
        await asyncio.sleep(0.05)  # then the engine drops the idle connection

    engine.handler = one_request_only
    client = await connect()
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    await client.response()
    await asyncio.sleep(0.2)
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    assert (await client.response())[1] == b"OK"
    assert engine.connections == 2


async def test_engine_unreachable_is_a_502_and_service_resumes(
    engine: FakeEngine, connect: Connect
) -> None:
    await engine.stop()
    import os

    os.unlink(engine.path)
    client = await connect()
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    head, body = await client.response()
    assert head.startswith(b"HTTP/1.1 502")
    assert b"Content-Type: application/json" in head
    message = json.loads(body)["message"]
    assert message.startswith(f"sockproxy: cannot reach the engine at {engine.path}: ")
    await engine.start()
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    head, body = await client.response()
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"OK"


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET http://x/_ping HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    ],
    ids=["cl+te", "absolute-form", "obs-fold"],
)
async def test_ambiguous_request_is_refused_before_reaching_the_engine(
    engine: FakeEngine, connect: Connect, raw: bytes
) -> None:
    client = await connect()
    client.writer.write(raw)
    reply = await asyncio.wait_for(client.reader.read(), 5)  # answered, then closed
    assert reply.startswith(b"HTTP/1.1 400")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["message"]
    assert engine.heads == []


async def test_invalid_chunk_framing_never_reaches_the_engine(
    engine: FakeEngine, connect: Connect
) -> None:
    got = bytearray()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        got.extend(await reader.read())

    engine.handler = record
    client = await connect()
    client.writer.write(
        b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0x5\r\nGET /smuggled HTTP/1.1\r\n\r\n"
    )
    await asyncio.wait_for(client.reader.read(), 5)
    await asyncio.wait_for(engine.closed.wait(), 5)
    assert b"smuggled" not in got
    assert b"0x5" not in got


async def test_expect_continue_on_an_inspected_body_is_answered_at_once(
    engine: FakeEngine, connect: Connect
) -> None:
    """curl-style clients hold the body until they see 100 Continue."""
    client = await connect()
    body = b'{"Image": "busybox"}'
    client.writer.write(
        b"POST /v1.41/containers/create HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.writer.write(body)
    head, _ = await client.response()
    assert head.startswith(b"HTTP/1.1 200")


async def test_a_refused_request_still_uploading_its_body_reads_the_refusal(
    engine: FakeEngine, connect: Connect
) -> None:
    """The rest of a refused body is read and dropped, so the client can read the 403
    instead of a connection reset (docker build's context upload)."""
    client = await connect()
    size = 16 * 1024 * 1024
    client.writer.write(
        b"POST /v1.41/no/such/endpoint HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
    )

    async def upload() -> None:
        for _ in range(size // (1 << 20)):
            client.writer.write(b"x" * (1 << 20))
            await client.writer.drain()

    uploading = asyncio.ensure_future(upload())
    head, body = await asyncio.wait_for(client.response(), 5)
    await asyncio.wait_for(uploading, 5)
    assert head.startswith(b"HTTP/1.1 403")
    assert b"endpoint not recognised" in body
    assert await asyncio.wait_for(client.reader.read(), 5) == b""  # then closed
    assert engine.heads == []
