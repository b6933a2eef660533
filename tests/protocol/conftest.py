"""The proxy in-process against an in-process fake engine that records what reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop

from sockproxy.engine import EnginePool
from sockproxy.limits import Limits
from sockproxy.listener import open_listener
from sockproxy.policy import PERMISSIVE, Policy
from sockproxy.server import Server

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one request (head, Content-Length body) the way a simple engine would."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def response(body: bytes = b"OK", status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive engine that answers every request with 200 "OK"."""
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(response())
        await writer.drain()


@dataclass
class FakeEngine:
    path: str
    handler: Handler = answer_ok
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        recording = _Recorder(reader, self)
        try:
            await self.handler(recording, writer)  # type: ignore[arg-type]
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()


class _Recorder:
    """Wraps the engine's reader to record every request head it reads."""

    def __init__(self, reader: asyncio.StreamReader, engine: FakeEngine) -> None:
        self._reader = reader
        self._engine = engine

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        data = await self._reader.readuntil(separator)
        if separator == b"\r\n\r\n":
            self._engine.heads.append(data)
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._reader, name)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every protocol test runs on asyncio's own loop and on uvloop (what serve uses)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def engine(sockdir: Path) -> AsyncIterator[FakeEngine]:
    fake = FakeEngine(str(sockdir / "engine.sock"))
    await fake.start()
    yield fake
    await fake.stop()


async def start_proxy(
    path: Path, engine_path: str, policy: Policy = PERMISSIVE, limits: Limits | None = None
) -> Server:
    """A running proxy listening on ``path`` in front of the engine socket at
    ``engine_path``; its socket is ``server.listeners[0].path``."""
    server = Server([open_listener(str(path))], EnginePool(engine_path), policy, limits)
    await server.start()
    return server


@pytest.fixture
async def proxy(sockdir: Path, engine: FakeEngine) -> AsyncIterator[str]:
    """Path of a running proxy socket in front of the fake engine."""
    server = await start_proxy(sockdir / "proxy.sock", engine.path)
    yield server.listeners[0].path
    await server.shutdown(grace=1.0)


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def response(self) -> tuple[bytes, bytes]:
        """Read one Content-Length response: (head, body)."""
        return await read_request(self.reader)

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def connect(proxy: str) -> AsyncIterator[Callable[[], Awaitable[Client]]]:
    clients: list[Client] = []

    async def open_client() -> Client:
        reader, writer = await asyncio.open_unix_connection(proxy)
        clients.append(Client(reader, writer))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()
