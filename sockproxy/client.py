"""One client connection: the request pipeline, driven by callbacks.

    frame -> classify -> decide -> forward | stream | hijack -> audit

Requests on a keep-alive connection are handled one at a time: the bytes
of a pipelined next request wait in the buffer until the previous response
has been relayed, and no byte of a request goes to the engine before its
decision. Early bytes of a hijacked stream (stdin sent before the engine
answered) are kept and delivered in order. There is no task per request:
the relay is a pair of protocol objects, which is what makes it cheap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from enum import Enum, auto
from typing import TYPE_CHECKING, cast

from sockproxy import fence, lookup, nested
from sockproxy.config import NO_POLICY_RULE
from sockproxy.engine import WRITE_HIGH_WATER, EngineSide
from sockproxy.errors import (
    BodyTooLarge,
    EngineUnreachable,
    FramingError,
    HeadTooLarge,
    ProxyError,
    error_response,
)
from sockproxy.exchange import Exchange
from sockproxy.framing import (
    HEAD_END,
    BodyScanner,
    Framing,
    RequestHead,
    body_scanner,
    dechunk,
    parse_request_head,
    rebuild_head,
)
from sockproxy.identity import Identity, from_certificate, from_unix_peer
from sockproxy.listener import Listener
from sockproxy.model import Mount, Request
from sockproxy.normalize import normalize
from sockproxy.policy import Decision, Policy, evaluate
from sockproxy.routes import Route, classify

if TYPE_CHECKING:
    from sockproxy.server import Server

PIPELINE_LIMIT = 256 * 1024  # bytes buffered ahead of the current exchange


class Refused(ProxyError):
    """Policy refused the request; it never reaches the engine."""

    status = 403
    close = False


class RequestTimeout(ProxyError):
    status = 408


def identify(listener: Listener, transport: asyncio.BaseTransport) -> Identity:
    """Who connected: the kernel's word on a Unix socket, the verified
    certificate on TLS, the creator's identity on a nested socket."""
    if listener.fixed is not None:  # the creator, as seen from this process in a container
        peer = from_unix_peer(transport.get_extra_info("socket"), listener.name)
        return dataclasses.replace(
            listener.fixed.identity, listener=listener.name, pid=peer.pid, process=peer.process
        )
    if listener.tls is not None:
        return from_certificate(transport.get_extra_info("peercert"), listener.name)
    if not listener.path:
        return Identity(listener.name)  # plain TCP (explicit opt-in): nobody in particular
    return from_unix_peer(transport.get_extra_info("socket"), listener.name)


class FormBody(ProxyError):
    status = 400


# The methods the engines' routers serve (routes.ENDPOINTS); any other is a
# framing-level refusal (400, connection closed), not an unknown endpoint.
_SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refuse_form_body(head: RequestHead) -> None:
    """Go's net/http merges a form-encoded body into the query parameters
    (``r.Form``) that the engines read: a parameter could hide there from
    the policy. No engine client sends such bodies, so they are refused."""
    if head.framing is Framing.NONE:
        return
    # Every Content-Type counts: Go reads the first, RequestHead.header the last.
    for name, value in head.headers:
        content_type = value.split(";", 1)[0].strip().lower()
        if name == "content-type" and content_type in _FORM_TYPES:
            raise FormBody(f"sockproxy: {content_type} request bodies are not accepted")


class _State(Enum):
    HEAD = auto()  # waiting for a request head
    INSPECT = auto()  # reading a body that policy must see before deciding
    LOOKUP = auto()  # asking the engine for fresh state before deciding
    CONNECTING = auto()  # decided; opening an engine connection
    BODY = auto()  # streaming the request body to the engine
    AWAIT = auto()  # request sent; the engine side relays the response
    PIPE = auto()  # hijacked: raw bytes both ways
    DRAIN = auto()  # refused: reading and dropping the rest of the body, then closing
    CLOSED = auto()


class ClientSide(asyncio.Protocol):
    def __init__(self, server: Server, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.state = _State.HEAD
        self.buf = bytearray()
        self.exchange: Exchange | None = None
        self.engine: EngineSide | None = None
        self.scanner: BodyScanner | None = None
        self.inspected = bytearray()  # the body being read for inspection
        self.pending: tuple[RequestHead, Route, bytes] | None = None
        self.peer_eof = False  # the client ended its side
        self.engine_eof = False  # hijacked: the engine ended its side
        self.write_paused = False
        self._pauses: set[str] = set()
        self._advancing = False
        self.identity = Identity(listener.name)
        # The policy in force for this client, and the regime it came from.
        self.policy: Policy | None = None
        self.who: Mapping[str, object] = {}  # the identity as audited
        self._generation = -1
        self._deadline = 0.0  # when the head being read (or the idle wait) times out
        self._timer: asyncio.TimerHandle | None = None

    @property
    def peer_key(self) -> int | str:
        """Whose connections these are, for the per-client connection limit."""
        return self.identity.subject or self.identity.uid

    def _select(self) -> Policy | None:
        """The policy for this client under the regime in force (picked
        again after a reload, at the next request)."""
        regime = self.server.regime
        if regime.generation != self._generation:
            if self.listener.fixed is not None:
                self.policy = regime.policies.get(self.listener.fixed.policy)
            else:
                self.policy, self.identity = regime.select(self.identity)
            self.who = self.identity.audit_fields()
            self._generation = regime.generation
        return self.policy

    # -- asyncio callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.identity = identify(self.listener, transport)
        if self.server.metrics is not None:
            self.server.metrics.connection_opened(self.listener.name)
        refusal = self.server.admit(self)
        if refusal is not None:
            # Answer, end our side, and drop what the client still sends: closing
            # with its request unread would reset the socket before it reads this.
            self.state = _State.CLOSED
            self.transport.write(error_response(503, refusal, close=True))
            self.transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(1.0, self.transport.close)
            return
        self._wait(self.server.limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is _State.PIPE:
            assert self.engine is not None and self.exchange is not None
            self.exchange.bytes_in += len(data)
            self.engine.send(data)
        elif state is _State.BODY and not self.buf:
            self._send_body(data)
        elif state is _State.DRAIN:
            self._discard(data)
        elif state is not _State.CLOSED:
            if state is _State.HEAD and not self.buf:  # a new head starts: its clock runs
                self._wait(self.server.limits.head_timeout)
            self.buf += data
            if state is _State.HEAD or state is _State.INSPECT:
                self._advance()
            elif state is _State.BODY:
                data = bytes(self.buf)
                self.buf.clear()
                self._send_body(data)
            elif len(self.buf) > PIPELINE_LIMIT:
                self.pause("pipelined")

    def eof_received(self) -> bool:
        self.peer_eof = True
        state = self.state
        if state in (_State.HEAD, _State.INSPECT, _State.DRAIN, _State.CLOSED):
            return False  # nothing in flight, and no request can complete now
        if state is _State.BODY:
            self.abort()  # the client left inside its request body
            return False
        if state is _State.PIPE:
            assert self.engine is not None
            self.engine.half_close()
            if self.engine_eof:
                self._close()
            return True
        if state is _State.AWAIT and not self.buf and self.engine is not None:
            # Mirror the client: the engine ends what it streams, as it
            # would if the client were talking to it directly.
            self.engine.half_close()
        return True  # the response may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server.metrics is not None and self.transport is not None:
            self.server.metrics.connection_closed(self.listener.name)
        self.state = _State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
        self.server.release(self)
        if self.engine is not None:
            self.engine.close()  # client gone: free the engine connection too
            self.engine = None
        if self.exchange is not None:
            self.exchange.record()
            self.exchange = None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.engine is not None:
            self.engine.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.engine is not None:
            self.engine.resume_reading()

    # -- time limits ----------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        """Start the clock for reading a head (or sitting idle). One timer per
        connection is re-armed lazily: no timer handle per request."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        timer = self._timer
        if timer is not None and timer.when() > self._deadline:
            timer.cancel()  # the new deadline comes sooner than the timer
            timer = None
        if timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self.state not in (_State.HEAD, _State.INSPECT, _State.DRAIN) or not self._deadline:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        elif (self.state is _State.HEAD and not self.buf) or self.state is _State.DRAIN:
            self._close()  # idle keep-alive, or a refused body that doesn't end: close
        else:
            self._reply_and_close(RequestTimeout("sockproxy: request not received in time"))

    # -- flow control ---------------------------------------------------------

    def pause(self, reason: str) -> None:
        """Stop reading from the client until every reason is resumed."""
        if not self._pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._pauses.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- the request: frame, classify, decide ---------------------------------

    def _advance(self) -> None:
        if self._advancing:
            return  # the loop below picks up where an inner call would start
        self._advancing = True
        try:
            self._advance_heads()
        finally:
            self._advancing = False

    def _advance_heads(self) -> None:
        while self.state is _State.HEAD or self.state is _State.INSPECT:
            if self.state is _State.INSPECT:
                self._read_inspected()
                if self.state is _State.INSPECT:
                    return  # the body needs more bytes
                continue
            end = self.buf.find(HEAD_END)
            if end + 4 > self.server.limits.head_bytes:
                self._reply_and_close(HeadTooLarge("request head too large"))
                return
            if end < 0:
                if len(self.buf) > self.server.limits.head_bytes:
                    self._reply_and_close(HeadTooLarge("request head too large"))
                elif self.peer_eof:
                    self._close()
                return
            raw = bytes(self.buf[: end + 4])
            del self.buf[: end + 4]
            try:
                head = parse_request_head(raw)
                if head.method not in _SERVED_METHODS:
                    raise FramingError(f"method {head.method[:32]} is not served")
                _refuse_form_body(head)
            except ProxyError as exc:
                self._reply_and_close(exc)
                return
            route = classify(head.method, head.target)
            if route.body and head.framing is not Framing.NONE:
                self.state = _State.INSPECT
                self.scanner = body_scanner(head.framing, head.content_length)
                self.pending = (head, route, raw)
                if (head.header("expect") or "").lower() == "100-continue" and self.transport:
                    # The body is read here before the engine sees the head, so
                    # the client is told to send it now (the engine's own 100
                    # later is one more interim response, which clients skip).
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:
                self._decide(head, route, raw, None)

    def _read_inspected(self) -> None:
        """Read a body whole (bounded) before deciding: exactly these bytes
        are what policy sees and what the engine gets."""
        scanner, pending = self.scanner, self.pending
        assert scanner is not None
        assert pending is not None
        try:
            used = scanner.feed(self.buf)
            limit = self.server.limits.body_bytes
            if len(self.inspected) + used > limit:
                raise BodyTooLarge(f"sockproxy: request body over {limit} bytes")
        except ProxyError as exc:
            self._reply_and_close(exc)
            return
        self.inspected += self.buf[:used]
        del self.buf[:used]
        if not scanner.done:
            if self.peer_eof:  # the client ended its side: the body can never complete
                self._reply_and_close(FramingError("request body cut short"))
            elif len(self.buf) > self.server.limits.body_bytes:  # a line that never ends
                self._reply_and_close(BodyTooLarge("sockproxy: request body framing too long"))
            return
        head, route, raw = pending
        body = bytes(self.inspected)
        self.inspected.clear()
        self.pending = None
        self.scanner = None
        self.state = _State.HEAD
        self._decide(head, route, raw, body)

    def _decide(self, head: RequestHead, route: Route, raw: bytes, body: bytes | None) -> None:
        """Normalise and decide; then forward, or answer the refusal."""
        policy = self._select()
        failure: ProxyError | None = None
        request: Request | None = None
        payload = guarded = None
        if policy is None:
            decision = _NO_POLICY
            failure = Refused(decision.reason)
        else:
            try:
                payload = (
                    dechunk(body) if body is not None and head.framing is Framing.CHUNKED else body
                )
                request = normalize(
                    route.operation, route.section, route.body, route.query, payload
                )
                decided = request
                if policy.nested_policy is not None and request.containers:
                    guarded = nested.engine_socket_binds(request, policy.context)
                    decided = nested.without(request, guarded) if guarded else request
                decision = evaluate(policy, decided)
                if not decision.allowed:
                    failure = Refused(decision.reason)
            except ProxyError as exc:  # a body the engines could read differently, or not at all
                decision = Decision(False, "invalid-body", exc.message, False)
                failure = exc
        exchange = Exchange(
            head,
            route,
            decision,
            policy.name if policy else "",
            bytes_in=len(raw),
            identity=self.who,
            policy_digest=policy.digest if policy else "",
            listener=self.listener.name,
            metrics=self.server.metrics,
        )
        self.exchange = exchange
        if failure is None and guarded and payload is not None:
            failure = self._give_nested_socket(exchange, payload, guarded)
        if failure is not None:
            exchange.body_consumed = body is not None
            self._answer_error(failure)
            return
        if body is not None:
            exchange.body_consumed = True
            if exchange.inspected_body is None:
                exchange.inspected_body = body
        assert policy is not None and request is not None
        isolated = policy.isolation and fence.applies(route)
        recheck = route.operation in lookup.RECHECKED and bool(route.param("id")) and policy.rules
        if isolated or recheck:
            self.state = _State.LOOKUP
            self.pause("lookup")
            self.server.spawn(self._prepare(exchange, request, isolated=isolated))
            return
        self._forward(exchange)

    def _give_nested_socket(
        self, exchange: Exchange, payload: bytes, guarded: tuple[Mount, ...]
    ) -> ProxyError | None:
        """Bind a nested socket (this client, the nested policy) where the
        engine socket was asked for."""
        assert self.policy is not None
        found = self.server.regime.nested(self.policy)
        if found is None or self.server.nested is None:
            return Refused("sockproxy: no nested socket policy is in force")
        path = self.server.nested.socket_for(self.identity, found[0])
        try:
            body = nested.rewrite(payload, guarded, path)
        except ProxyError as exc:
            return exc
        self._send_instead(exchange, body=body)
        return None

    def _send_instead(
        self, exchange: Exchange, *, body: bytes | None = None, target: str | None = None
    ) -> None:
        """Forward a rewritten request (an ID for a name, a labelled body)."""
        length = None  # the body goes as the client framed it
        if body is not None:
            exchange.inspected_body = body
            length = len(body)
        exchange.sent_head = rebuild_head(exchange.head, target=target, body_length=length)

    async def _prepare(self, exchange: Exchange, request: Request, *, isolated: bool) -> None:
        """Decide on fresh engine state: ownership (isolation) and the binds
        a start will mount; then forward what may go."""
        route = exchange.route
        try:
            container = route.param("id")
            if isolated:
                owner = self.identity.owner
                body = exchange.inspected_body
                if body is not None and exchange.head.framing is Framing.CHUNKED:
                    body = dechunk(body)
                kind = self.policy.context.engine if self.policy else ""
                fenced = await fence.fence(
                    self.server.engine_client, owner, route, request, body, kind
                )
                if fenced.target is not None or fenced.body is not None:
                    self._send_instead(exchange, body=fenced.body, target=fenced.target)
                container = fenced.object_id or container
            refusal = None
            if route.operation in lookup.RECHECKED and container and self.policy is not None:
                refusal = await self._recheck_start(route, container)
        except ProxyError as exc:
            refusal = exc
            if isinstance(exc, fence.NotFound | fence.Unavailable):
                exchange.decision = Decision(False, fence.RULE, exc.message, False)
        if self.state is not _State.LOOKUP:
            return  # the client left meanwhile
        self.resume("lookup")
        if refusal is not None:
            self._answer_error(refusal)
            return
        self._forward(exchange)

    async def _recheck_start(self, route: Route, container: str) -> ProxyError | None:
        """Decide a start again on the binds the engine will mount now."""
        spec = await lookup.mounts_at_start(self.server.engine_client, container)
        if spec is None or not spec.mounts or self.policy is None:
            return None
        nested_sockets = self.server.nested
        if nested_sockets is not None:  # the nested sockets sockproxy bound itself
            mounts = tuple(m for m in spec.mounts if not nested_sockets.issued(m.source))
            spec = dataclasses.replace(spec, mounts=mounts)
        fresh = Request(route.operation, route.section, containers=(spec,))
        decision = evaluate(self.policy, fresh)
        if decision.allowed:
            return None
        assert self.exchange is not None
        self.exchange.decision = decision
        return Refused(decision.reason)

    # -- forward --------------------------------------------------------------

    def _forward(self, exchange: Exchange) -> None:
        self._deadline = 0.0  # in flight: streams may last as long as data flows
        self.exchange = exchange
        engine = self.server.pool.take()
        if engine is None:
            self.state = _State.CONNECTING
            self.pause("connecting")
            self.server.spawn(self._connect())
        else:
            self._attach(engine)

    async def _connect(self) -> None:
        try:
            engine = await self.server.pool.connect()
        except EngineUnreachable as exc:
            self.resume("connecting")
            if self.state is _State.CONNECTING:
                self._answer_error(exc)
            return
        if self.state is not _State.CONNECTING:
            engine.close()  # the client left meanwhile
            return
        self.resume("connecting")
        self._attach(engine)

    def _attach(self, engine: EngineSide) -> None:
        exchange = self.exchange
        assert exchange is not None
        self.engine = engine
        engine.bind(self)
        exchange.forwarded = time.monotonic()
        if self.write_paused:
            engine.pause_reading()
        head = exchange.head
        raw = exchange.sent_head or head.raw
        if exchange.inspected_body is not None:
            engine.send(raw + exchange.inspected_body)
            self._request_sent()
            return
        engine.send(raw)
        if head.framing is Framing.NONE:
            self._request_sent()
            return
        self.state = _State.BODY
        self.scanner = body_scanner(head.framing, head.content_length)
        data = bytes(self.buf)
        self.buf.clear()
        self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        scanner, engine, exchange = self.scanner, self.engine, self.exchange
        assert scanner is not None and engine is not None and exchange is not None
        try:
            used = scanner.feed(data)
        except FramingError as exc:
            # Nothing past the last valid byte was sent: the engine sees a
            # truncated body, never a second request smuggled inside it.
            engine.close()
            self.engine = None
            self._reply_and_close(exc)
            return
        if used:
            exchange.bytes_in += used
            engine.send(data if used == len(data) else data[:used])
        if used < len(data):
            self.buf += data[used:]
        if scanner.done:
            self._request_sent()
        elif self.peer_eof:
            self.abort()

    def _request_sent(self) -> None:
        assert self.exchange is not None
        self.state = _State.AWAIT
        self.scanner = None
        self.exchange.request_sent = True
        if self.peer_eof and not self.buf and self.engine is not None:
            self.engine.half_close()
        if len(self.buf) > PIPELINE_LIMIT:
            self.pause("pipelined")

    # -- called by the engine side --------------------------------------------

    def deliver(self, data: bytes) -> None:
        """Bytes for the client, from the engine."""
        if self.transport is not None and self.state is not _State.CLOSED:
            assert self.exchange is not None
            self.exchange.bytes_out += len(data)
            self.transport.write(data)

    def response_complete(self, engine: EngineSide, *, reusable: bool) -> None:
        exchange = self.exchange
        assert exchange is not None and exchange.response is not None
        request_done = self.state is _State.AWAIT
        self.engine = None
        if reusable and request_done:
            self.server.pool.release(engine)
        else:
            engine.close()  # the engine answered before reading the whole body
        keep = request_done and exchange.head.keep_alive and exchange.response.keep_alive
        self._exchange_done(keep_alive=keep)

    def hijacked(self, raw: bytes, early: bytes) -> None:
        """The engine switched the connection to a raw stream."""
        exchange, engine = self.exchange, self.engine
        assert exchange is not None and engine is not None
        if not exchange.decision.hijack or self.state is not _State.AWAIT:
            engine.close()
            self.engine = None
            self.abort()
            return
        self.state = _State.PIPE
        if exchange.metrics is not None:
            if exchange.stream:
                exchange.metrics.stream_closed(exchange.stream)
            exchange.stream = "hijack"
            exchange.metrics.stream_opened("hijack")
        self.deliver(raw + early)
        if self.buf:  # stdin the client sent before the engine answered
            data = bytes(self.buf)
            self.buf.clear()
            exchange.bytes_in += len(data)
            engine.send(data)
        self.resume("pipelined")
        if self.peer_eof:
            engine.half_close()

    def engine_ended(self) -> None:
        """Hijacked: the engine ended its side; the client's read must end too."""
        self.engine_eof = True
        transport = self.transport
        if transport is not None and transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()
        if self.peer_eof:
            self._close()

    def engine_lost(self) -> None:
        """Hijacked: the engine connection is gone."""
        self.engine = None
        self._close()

    def engine_failed(self, error: ProxyError) -> None:
        """The engine connection failed during the exchange."""
        self.engine = None
        if self.exchange is not None and not self.exchange.response_started:
            self._answer_error(error)
        else:
            self.abort()  # a truncated response: the client must notice

    def retry(self) -> bool:
        """A reused engine connection closed before answering: resend the
        request on a fresh one if nothing but its head was sent."""
        exchange = self.exchange
        if (
            exchange is None
            or self.state is not _State.AWAIT
            or exchange.head.framing is not Framing.NONE
        ):
            return False
        self.engine = None
        self.state = _State.CONNECTING
        self.pause("connecting")
        self.server.spawn(self._connect())
        return True

    # -- endings --------------------------------------------------------------

    def _answer_error(self, error: ProxyError) -> None:
        """Answer the current request with a JSON error and carry on if the
        connection is still in step (no request body left unread)."""
        exchange = self.exchange
        assert exchange is not None
        body_unread = (
            exchange.head.framing is not Framing.NONE
            and not exchange.request_sent
            and not exchange.body_consumed
        )
        keep = not error.close and not body_unread and exchange.head.keep_alive
        exchange.status = error.status
        payload = error_response(error.status, error.message, close=not keep)
        exchange.bytes_out += len(payload)
        if self.transport is not None:
            self.transport.write(payload)
        if body_unread and self.transport is not None:
            # The client may still be sending the body (a build context):
            # closing with it unread would reset the socket before the client
            # reads the answer, so the rest is read and dropped first.
            exchange.record()
            self.exchange = None
            self.state = _State.DRAIN
            self.scanner = body_scanner(exchange.head.framing, exchange.head.content_length)
            self._wait(self.server.limits.head_timeout)
            for reason in ("pipelined", "connecting", "engine"):
                self.resume(reason)
            data = bytes(self.buf)
            self.buf.clear()
            self._discard(data)
            return
        self._exchange_done(keep_alive=keep)

    def _discard(self, data: bytes) -> None:
        """DRAIN: drop body bytes; close once the body ended (or can't be framed)."""
        assert self.scanner is not None
        if self.buf:  # a framing line split across reads
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        try:
            used = self.scanner.feed(data)
        except FramingError:
            self._close()
            return
        if self.scanner.done or self.peer_eof:
            self._close()
        elif used < len(data):
            self.buf += data[used:]

    def _exchange_done(self, *, keep_alive: bool) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.record()
        self.exchange = None
        if not keep_alive or self.server.draining:
            self._close()
            return
        self.state = _State.HEAD
        limits = self.server.limits
        self._wait(limits.head_timeout if self.buf else limits.idle_timeout)
        self.resume("pipelined")
        self.resume("engine")
        if self.buf or self.peer_eof:
            self._advance()

    def _reply_and_close(self, error: ProxyError) -> None:
        if self.transport is not None:
            self.transport.write(error_response(error.status, error.message, close=True))
        if self.exchange is not None:
            self.exchange.status = error.status
        self._close()

    def _close(self) -> None:
        """Close after what was written has been flushed (both ways)."""
        self.state = _State.CLOSED
        if self.engine is not None:
            self.engine.finish()
            self.engine = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping anything unsent."""
        self.state = _State.CLOSED
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        """At shutdown: close a connection that has no request in flight."""
        if self.state is _State.HEAD and not self.buf:
            self._close()


_NO_POLICY = Decision(
    False,
    NO_POLICY_RULE,
    f"sockproxy: no policy applies to this client (rule {NO_POLICY_RULE})",
    False,
)
