"""Forward/stream/hijack stage, engine side: connections to the engine.

Each ``EngineSide`` is one HTTP/1.1 connection to the engine, driven by
callbacks (no task per request): it reads the response head, relays the
body exactly as the engine framed it, and hands the connection back to the
pool when the response ended cleanly. Connections are kept alive and reused:
opening one per request doubles the engine's own work per request.
"""

from __future__ import annotations

import asyncio
import time
from enum import Enum, auto
from typing import TYPE_CHECKING, cast

from sockproxy.errors import EngineProtocolError, EngineUnreachable, FramingError, ProxyError
from sockproxy.framing import (
    HEAD_END,
    BodyScanner,
    Framing,
    ResponseHead,
    UntilCloseBody,
    body_scanner,
    parse_response_head,
)

if TYPE_CHECKING:
    from sockproxy.client import ClientSide

HEAD_LIMIT = 256 * 1024  # largest response head accepted from the engine
WRITE_HIGH_WATER = 1024 * 1024  # bytes buffered towards a peer before backpressure


_STREAMED = (Framing.CHUNKED, Framing.UNTIL_CLOSE)


class _State(Enum):
    IDLE = auto()  # in the pool, or not yet bound
    HEAD = auto()  # waiting for the response head
    BODY = auto()  # relaying the response body
    PIPE = auto()  # hijacked: raw bytes both ways
    CLOSED = auto()


class EngineSide(asyncio.Protocol):
    """One connection to the engine."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.client: ClientSide | None = None
        self.state = _State.IDLE
        self.buf = bytearray()
        self.scanner: BodyScanner | None = None
        self.reused = False
        self.answered = False  # some response byte arrived for the current request
        self.idle_since = 0.0
        self.half_closed = False  # we ended our side towards the engine
        self.reading_paused = False

    # -- driven by the client side ------------------------------------------

    def bind(self, client: ClientSide) -> None:
        self.client = client
        self.state = _State.HEAD
        self.answered = False

    def send(self, data: bytes | bytearray) -> None:
        if self.transport is not None and self.state is not _State.CLOSED:
            self.transport.write(data)

    def half_close(self) -> None:
        """End our side towards the engine; it then stops what it streams."""
        if self.transport is not None and self.state is not _State.CLOSED:
            self.half_closed = True
            if self.transport.can_write_eof() and not self.transport.is_closing():
                self.transport.write_eof()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            if not self.transport.is_closing():
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def finish(self) -> None:
        """Close once what was written to the engine has been flushed."""
        self.client = None
        self.state = _State.CLOSED
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Drop the connection at once (it is out of step or no longer wanted)."""
        self.client = None
        self.state = _State.CLOSED
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if self.state is _State.PIPE and client is not None:
            client.deliver(data)
            return
        if client is None or self.state not in (_State.HEAD, _State.BODY):
            # Bytes nobody asked for: the connection is out of step.
            self.close()
            self.pool.forget(self)
            return
        self.answered = True
        if self.state is _State.BODY and not self.buf:
            self._relay_body(data)
            return
        self.buf += data
        self._advance()

    def eof_received(self) -> bool:
        client = self.client
        if self.state is _State.PIPE and client is not None:
            client.engine_ended()
            return True  # the client may still be sending to a half-closed engine
        if self.state is _State.BODY and isinstance(self.scanner, UntilCloseBody):
            self._complete(reusable=False)
        else:
            self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if self.state is _State.PIPE and client is not None:
            self.state = _State.CLOSED
            self.client = None
            client.engine_lost()
        else:
            self._lost()
        self.state = _State.CLOSED
        self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause("engine")

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume("engine")

    # -- the response ---------------------------------------------------------

    def _advance(self) -> None:
        while self.state is _State.HEAD:
            end = self.buf.find(HEAD_END)
            if end < 0:
                if len(self.buf) > HEAD_LIMIT:
                    self._fail(
                        EngineProtocolError("sockproxy: response head from the engine too large")
                    )
                return
            raw = bytes(self.buf[: end + 4])
            del self.buf[: end + 4]
            if not self._start_response(raw):
                return
            if self.scanner is not None:  # a body follows
                # Head and the body bytes already here go out in one write.
                data = bytes(self.buf)
                self.buf.clear()
                self._relay_body(data, head=raw)
                return
        if self.state is _State.BODY and self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            self._relay_body(data)

    def _start_response(self, raw: bytes) -> bool:
        """Handle one response head. True while the exchange goes on with
        this connection: an interim response (another head follows) or a body
        to relay (then the caller delivers ``raw`` with the body's first bytes)."""
        client = self.client
        assert client is not None
        exchange = client.exchange
        assert exchange is not None
        try:
            response = parse_response_head(raw, exchange.head.method)
        except FramingError as exc:
            self._fail(EngineProtocolError(f"sockproxy: invalid response from the engine: {exc}"))
            return False
        if response.status < 200 and response.status != 101:
            client.deliver(raw)  # interim response (100 Continue): the real one follows
            return True
        exchange.response = response
        exchange.status = response.status
        exchange.engine_seconds = time.monotonic() - exchange.forwarded
        if exchange.metrics is not None and response.framing in _STREAMED:
            exchange.stream = "stream"  # chunked or until-close: logs -f, events, stats, pulls
            exchange.metrics.stream_opened("stream")
        if response.status == 101 and not exchange.route.hijack:
            self._fail(
                EngineProtocolError(
                    "sockproxy: the engine switched protocols on an endpoint that never does"
                )
            )
            return False
        if _is_hijack(exchange.route.hijack, response):
            self.state = _State.PIPE
            early = bytes(self.buf)
            self.buf.clear()
            client.hijacked(raw, early)
            return False
        if response.framing is Framing.NONE:
            client.deliver(raw)
            # Bytes after a bodiless response answer nothing: out of step.
            self._complete(reusable=not self.buf)
            return False
        self.state = _State.BODY
        self.scanner = body_scanner(response.framing, response.content_length)
        return True

    def _relay_body(self, data: bytes, head: bytes = b"") -> None:
        client, scanner = self.client, self.scanner
        assert client is not None
        assert scanner is not None
        try:
            used = scanner.feed(data)
        except FramingError as exc:
            self._fail(EngineProtocolError(f"sockproxy: invalid response from the engine: {exc}"))
            return
        if used or head:
            client.deliver(
                head + data[:used] if head else data if used == len(data) else data[:used]
            )
        if scanner.done:
            # Bytes past the end of a response were never asked for.
            self._complete(reusable=used == len(data))
        elif used < len(data):
            self.buf += data[used:]  # an incomplete framing line, held back

    def _complete(self, *, reusable: bool) -> None:
        client = self.client
        response = client.exchange.response if client and client.exchange else None
        self.state = _State.IDLE
        self.scanner = None
        self.client = None
        if client is not None:
            reusable = reusable and response is not None and response.keep_alive
            client.response_complete(self, reusable=reusable and not self.half_closed)

    def _lost(self) -> None:
        """The engine closed (or failed) in the middle of an exchange."""
        client = self.client
        if client is None or self.state not in (_State.HEAD, _State.BODY):
            self.state = _State.CLOSED
            return
        retry = self.state is _State.HEAD and self.reused and not self.answered
        self.client = None
        self.state = _State.CLOSED
        if retry and client.retry():
            return
        if self.answered:
            client.engine_failed(
                EngineProtocolError("sockproxy: the engine closed the stream early")
            )
        else:
            client.engine_failed(
                EngineUnreachable("sockproxy: the engine closed the connection without answering")
            )

    def _fail(self, error: ProxyError) -> None:
        client = self.client
        self.close()
        self.pool.forget(self)
        if client is not None:
            client.engine_failed(error)


def _is_hijack(route_hijacks: bool, response: ResponseHead) -> bool:
    """Did the engine switch the connection to a raw stream?

    Either the upgrade form (101), or the older one: a 200 with no framing on
    an endpoint that hijacks (moby's attach and exec start answer so when the
    client sent no Upgrade header).
    """
    if response.status == 101:
        return True
    return route_hijacks and response.status == 200 and response.framing is Framing.UNTIL_CLOSE


class EnginePool:
    """Idle keep-alive connections to the engine, most recently used first."""

    def __init__(self, path: str, *, max_idle: int = 64, idle_timeout: float = 30.0) -> None:
        self.path = path
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: list[EngineSide] = []
        self._closed = False

    def take(self) -> EngineSide | None:
        """A healthy idle connection, or None when a new one must be opened."""
        now = time.monotonic()
        while self._idle:
            engine = self._idle.pop()
            transport = engine.transport
            if (
                engine.state is _State.IDLE
                and transport is not None
                and not transport.is_closing()
                and now - engine.idle_since < self.idle_timeout
            ):
                engine.reused = True
                return engine
            engine.close()
        return None

    async def connect(self) -> EngineSide:
        loop = asyncio.get_running_loop()
        try:
            _, engine = await loop.create_unix_connection(lambda: EngineSide(self), self.path)
        except OSError as exc:
            raise EngineUnreachable(
                f"sockproxy: cannot reach the engine at {self.path}: {exc.strerror or exc}"
            ) from exc
        return engine

    def release(self, engine: EngineSide) -> None:
        """Take back a connection whose exchange ended cleanly."""
        engine.resume_reading()
        if self._closed or len(self._idle) >= self.max_idle or engine.state is not _State.IDLE:
            engine.close()
            return
        engine.idle_since = time.monotonic()
        self._idle.append(engine)

    def forget(self, engine: EngineSide) -> None:
        if engine in self._idle:
            self._idle.remove(engine)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
