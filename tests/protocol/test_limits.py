"""Limits: a slow, idle, greedy or oversized client is cut off; others are not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sockproxy.limits import Limits
from sockproxy.server import Server
from tests.protocol.conftest import FakeEngine, read_request, start_proxy

Start = Callable[[Limits], Awaitable[str]]


@pytest.fixture
async def start(sockdir: Path, engine: FakeEngine) -> AsyncIterator[Start]:
    servers: list[Server] = []

    async def run(limits: Limits) -> str:
        server = await start_proxy(sockdir / "limited.sock", engine.path, limits=limits)
        servers.append(server)
        return server.listeners[0].path

    yield run
    for server in servers:
        await server.shutdown(grace=0.5)


async def answer(path: str, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def status_and_message(reply: bytes) -> tuple[int, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["message"]


async def test_a_head_sent_too_slowly_gets_408(start: Start, engine: FakeEngine) -> None:
    path = await start(Limits(head_timeout=0.2))
    reply = await answer(path, b"GET /_ping HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert status_and_message(reply) == (408, "sockproxy: request not received in time")
    assert engine.heads == []


async def test_an_idle_keep_alive_connection_is_closed(start: Start) -> None:
    path = await start(Limits(idle_timeout=0.2))
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    await read_request(reader)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed without a word
    writer.close()


async def test_streams_never_time_out_while_in_flight(start: Start, engine: FakeEngine) -> None:
    async def slow_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            await asyncio.sleep(0.15)  # each gap is under, the whole is over the limits
            writer.write(b"2\r\nx\n\r\n")
        writer.write(b"0\r\n\r\n")

    engine.handler = slow_stream
    path = await start(Limits(head_timeout=0.2, idle_timeout=0.2))
    reply = await answer(path, b"GET /v1.41/events HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply.endswith(b"2\r\nx\n\r\n" * 4 + b"0\r\n\r\n")


async def test_too_large_head_gets_431(start: Start, engine: FakeEngine) -> None:
    path = await start(Limits(head_bytes=1024))
    reply = await answer(path, b"GET /_ping HTTP/1.1\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
    assert status_and_message(reply)[0] == 431
    assert engine.heads == []


async def test_too_large_inspected_body_gets_413(start: Start, engine: FakeEngine) -> None:
    path = await start(Limits(body_bytes=1024))
    body = b'{"Image": "x", "Env": ["' + b"a" * 4096 + b'"]}'
    reply = await answer(
        path,
        b"POST /v1.41/containers/create HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert status_and_message(reply)[0] == 413
    assert engine.heads == []


async def test_connections_over_the_cap_get_503_and_others_keep_working(start: Start) -> None:
    path = await start(Limits(max_connections=2))
    first = await asyncio.open_unix_connection(path)
    second = await asyncio.open_unix_connection(path)
    reply = await answer(path, b"GET /_ping HTTP/1.1\r\n\r\n")
    assert status_and_message(reply) == (503, "sockproxy: too many connections")
    first[1].write(b"GET /_ping HTTP/1.1\r\n\r\n")
    assert (await read_request(first[0]))[1] == b"OK"
    for _, writer in (first, second):
        writer.close()


async def test_connections_are_capped_per_client_uid(start: Start) -> None:
    import os

    path = await start(Limits(max_connections_per_uid=1))
    first = await asyncio.open_unix_connection(path)
    reply = await answer(path, b"GET /_ping HTTP/1.1\r\n\r\n")
    assert status_and_message(reply) == (
        503,
        f"sockproxy: too many connections from uid {os.getuid()}",
    )
    first[1].close()
