"""One client connection: the request pipeline, in order.

    frame -> classify -> decide -> forward | stream | hijack -> audit

Requests on a keep-alive connection are handled one at a time: the next
request's bytes (pipelining) stay in the reader until the previous response
has been relayed, and no byte of a request goes upstream before its
decision. A failure here affects this connection only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sockproxy import audit
from sockproxy.errors import (
    EngineProtocolError,
    EngineUnreachable,
    FramingError,
    HeadTooLarge,
    ProxyError,
    error_response,
)
from sockproxy.framing import (
    HEAD_END,
    Framing,
    RequestHead,
    ResponseHead,
    parse_request_head,
    parse_response_head,
)
from sockproxy.policy import Decision, evaluate
from sockproxy.relay import Meter, SourceGone, copy_chunked, copy_length, copy_until_eof, splice
from sockproxy.routes import Route, classify
from sockproxy.upstream import STREAM_LIMIT, WRITE_HIGH_WATER, EngineConnection

if TYPE_CHECKING:
    from sockproxy.server import Server

# A response body up to this size is read whole and written with its head
# in one go: one write to the client instead of two.
_SMALL_BODY = 64 * 1024


class ClientProtocol(asyncio.StreamReaderProtocol):
    """A client socket; tells the pipeline when the client ends its side."""

    def __init__(self, server: Server) -> None:
        self.reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        super().__init__(self.reader)
        self.server = server
        self.peer_eof = False
        self._on_eof: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        writer = asyncio.StreamWriter(transport, self, self.reader, asyncio.get_running_loop())
        self.server.spawn(Connection(self.server, self, self.reader, writer))

    def eof_received(self) -> bool | None:
        self.peer_eof = True
        keep_open = super().eof_received()
        self._fire_eof()
        return keep_open

    def on_eof(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once the client has ended its side (now, if it has)."""
        self._on_eof = callback
        if self.peer_eof:
            self._fire_eof()

    def has_buffered(self) -> bool:
        """Has the client sent bytes not read yet (a pipelined request)?"""
        # StreamReader has no public length; its buffer is a bytearray.
        return bool(self.reader._buffer)  # type: ignore[attr-defined]

    def _fire_eof(self) -> None:
        callback, self._on_eof = self._on_eof, None
        if callback is not None:
            callback()


@dataclass(slots=True)
class Exchange:
    """What one request did, for the audit event."""

    head: RequestHead
    route: Route
    decision: Decision | None = None
    status: int | None = None
    response_started: bool = False
    keep_alive: bool = False


class Connection:
    def __init__(
        self,
        server: Server,
        protocol: ClientProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self.idle = True  # waiting for a request head with nothing buffered

    async def run(self) -> None:
        """Serve requests until either side closes or the server drains."""
        try:
            while not self.server.draining:
                self.idle = True
                raw = await self._read_head()
                self.idle = False
                if raw is None or not await self._serve(raw):
                    break
        except (ConnectionError, SourceGone, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to tell it
        except ProxyError as exc:  # a head that could not even be framed
            self._reply(exc.status, exc.message, close=True)
        finally:
            self.writer.close()

    def close_if_idle(self) -> None:
        if self.idle and not self.protocol.has_buffered():
            self.writer.close()

    async def _read_head(self) -> bytes | None:
        try:
            return await self.reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise FramingError("connection closed inside a request head") from exc
            return None
        except asyncio.LimitOverrunError as exc:
            raise HeadTooLarge("request head too large") from exc

    def _reply(self, status: int, message: str, *, close: bool) -> None:
        if not self.writer.is_closing():
            self.writer.write(error_response(status, message, close=close))

    async def _serve(self, raw: bytes) -> bool:
        """Handle one request; True when the connection stays open for the next."""
        started = time.monotonic()
        sent, received = Meter(), Meter()
        head = parse_request_head(raw)
        route = classify(head.method, head.target)
        exchange = Exchange(head, route)
        try:
            decision = evaluate(self.server.policy, route, head)
            exchange.decision = decision
            if not decision.allowed:
                raise Refused(decision.reason)
            await self._forward(exchange, sent, received)
        except ProxyError as exc:
            if exchange.response_started:
                exchange.keep_alive = False
            else:
                # An unread request body leaves the connection out of step.
                exchange.keep_alive = not exc.close and head.framing is Framing.NONE
                exchange.status = exc.status
                self._reply(exc.status, exc.message, close=not exchange.keep_alive)
        finally:
            verdict = exchange.decision
            audit.record(
                method=head.method,
                path=route.path,
                operation=route.operation,
                allowed=verdict is not None and verdict.allowed,
                rule=verdict.rule if verdict else None,
                status=exchange.status,
                duration=time.monotonic() - started,
                bytes_in=len(raw) + sent.count,
                bytes_out=received.count,
                policy=self.server.policy.name,
            )
        return exchange.keep_alive and head.keep_alive

    async def _forward(self, exchange: Exchange, sent: Meter, received: Meter) -> None:
        head = exchange.head
        engine = await self.server.pool.acquire()
        try:
            response, body = await self._send_request(engine, head, sent)
            await self._relay_response(engine, exchange, response, body, sent, received)
        except BaseException:
            engine.close()
            raise
        finally:
            self.protocol.on_eof(None)

    async def _send_request(
        self, engine: EngineConnection, head: RequestHead, sent: Meter
    ) -> tuple[ResponseHead, asyncio.Future[None] | None]:
        """Send the request and read the response head.

        A body is streamed by a task of its own that may still be running
        when the head arrives (the engine can answer before reading it all).
        """
        if head.framing is Framing.NONE:
            # Nothing else to send: a reused connection that the engine had
            # already closed is retried once on a fresh one.
            engine.writer.write(head.raw)
            try:
                raw = await _read_response_head(engine)
            except EngineUnreachable:
                if not engine.reused:
                    raise
                engine.close()
                fresh = await self.server.pool.connect()
                engine.reader, engine.writer, engine.reused = fresh.reader, fresh.writer, False
                engine.writer.write(head.raw)
                raw = await _read_response_head(engine)
            self._propagate_client_eof(engine)
            return parse_response_head(raw, head.method), None
        engine.writer.write(head.raw)
        body = asyncio.ensure_future(self._send_body(engine, head, sent))
        response_head = asyncio.ensure_future(_read_response_head(engine))
        try:
            await asyncio.wait({body, response_head}, return_when=asyncio.FIRST_COMPLETED)
            if body.done() and body.exception() is not None:
                await body  # raise why the body could not be sent
            raw = await response_head
        except BaseException:
            body.cancel()
            response_head.cancel()
            raise
        return parse_response_head(raw, head.method), body

    async def _send_body(self, engine: EngineConnection, head: RequestHead, sent: Meter) -> None:
        try:
            if head.framing is Framing.LENGTH:
                await copy_length(self.reader, engine.writer, head.content_length, sent)
            else:
                await copy_chunked(self.reader, engine.writer, sent)
        except (ConnectionError, SourceGone) as exc:
            raise _ClientGone("sockproxy: the client closed inside its request body") from exc
        self._propagate_client_eof(engine)

    def _propagate_client_eof(self, engine: EngineConnection) -> None:
        """Once the request is sent, the client ending its side (and sending
        no further request) ends ours towards the engine: the engine then
        stops a stream it serves, as it would for a direct client."""

        def half_close() -> None:
            if not self.protocol.has_buffered() and not engine.writer.is_closing():
                engine.writer.write_eof()

        self.protocol.on_eof(half_close)

    async def _relay_response(
        self,
        engine: EngineConnection,
        exchange: Exchange,
        response: ResponseHead,
        body: asyncio.Future[None] | None,
        sent: Meter,
        received: Meter,
    ) -> None:
        head, route, client = exchange.head, exchange.route, self.writer
        while response.status == 100:  # interim response: relay it, read the real one
            client.write(response.raw)
            response = parse_response_head(await _read_response_head(engine), head.method)
        exchange.status = response.status
        if _is_hijack(route, head, response):
            exchange.response_started = True
            if exchange.decision is None or not exchange.decision.hijack:
                raise EngineProtocolError(
                    "sockproxy: the engine hijacked a connection "
                    "that policy did not allow to be hijacked"
                )
            if body is not None:
                await body
            self.protocol.on_eof(None)  # the splice carries half-closes itself
            client.write(response.raw)
            received.count += len(response.raw)
            await splice(self.reader, client, engine.reader, engine.writer, sent, received)
            engine.close()
            exchange.keep_alive = False
            return
        if response.framing is Framing.LENGTH and response.content_length <= _SMALL_BODY:
            data = await _read_exactly(engine, response.content_length)
            client.write(response.raw + data)
            received.count += len(response.raw) + len(data)
        else:
            client.write(response.raw)
            exchange.response_started = True
            received.count += len(response.raw)
            await self._relay_body(engine, response, received)
        await client.drain()
        exchange.response_started = True
        clean = True
        if body is not None and not body.done():
            # The engine answered without reading the whole body: the two
            # connections are out of step and cannot be reused.
            body.cancel()
            clean = False
        elif body is not None:
            await body
        exchange.keep_alive = clean and response.keep_alive and head.keep_alive
        if exchange.keep_alive and not self.protocol.peer_eof:
            self.server.pool.release(engine)
        else:
            engine.close()

    async def _relay_body(
        self, engine: EngineConnection, response: ResponseHead, received: Meter
    ) -> None:
        try:
            if response.framing is Framing.LENGTH:
                await copy_length(engine.reader, self.writer, response.content_length, received)
            elif response.framing is Framing.CHUNKED:
                await copy_chunked(engine.reader, self.writer, received)
            elif response.framing is Framing.UNTIL_CLOSE:
                await copy_until_eof(engine.reader, self.writer, received)
        except SourceGone as exc:
            raise EngineProtocolError("sockproxy: the engine closed the stream early") from exc
        except FramingError as exc:
            raise EngineProtocolError(
                f"sockproxy: invalid response from the engine: {exc}"
            ) from exc


class Refused(ProxyError):
    """Policy refused the request; it never reaches the engine."""

    status = 403
    close = False


class _ClientGone(ProxyError):
    """The client closed while its request body was being sent."""

    status = 400


def _is_hijack(route: Route, head: RequestHead, response: ResponseHead) -> bool:
    """Did the engine switch this connection to a raw stream?

    Either the upgrade form (101) or the older one: a 200 with no framing on
    an endpoint that hijacks (moby's httputils hijack, Podman's likewise).
    """
    if response.status == 101:
        return True
    return route.hijack and response.status == 200 and response.framing is Framing.UNTIL_CLOSE


async def _read_response_head(engine: EngineConnection) -> bytes:
    try:
        return await engine.reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise EngineProtocolError("sockproxy: the engine closed inside a response") from exc
        raise EngineUnreachable("sockproxy: the engine closed the connection") from exc
    except asyncio.LimitOverrunError as exc:
        raise EngineProtocolError("sockproxy: response head from the engine too large") from exc
    except ConnectionError as exc:
        raise EngineUnreachable(f"sockproxy: lost the engine connection: {exc}") from exc


async def _read_exactly(engine: EngineConnection, length: int) -> bytes:
    try:
        return await engine.reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise EngineProtocolError("sockproxy: the engine closed the stream early") from exc
