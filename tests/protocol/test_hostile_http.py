"""Hostile framings: what two HTTP parsers could read differently never reaches the engine.

Each row of the corpus is sent through the proxy (enforcing
``policies/default.yaml``) to a fake engine that reads requests the way Go's
net/http server does (both Docker Engine and Podman are Go) and records every
byte it receives. A framing refusal is a 400 Docker-style JSON error after
which sockproxy closes the connection, and the engine has received no byte of
it; a request smuggled inside another one is never read by the engine as a
request of its own; a request that sockproxy does read on its own (pipelined,
or early "stdin" after a hijack that did not happen) is classified and decided
on its own, so the privileged ``containers/create`` every row smuggles is
refused by policy whenever it is read at all.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import cast

import pytest

from sockproxy.policy import load_policy
from tests.protocol.conftest import start_proxy

POLICY = load_policy(str(Path(__file__).resolve().parents[2] / "policies" / "default.yaml"))

# -- the engine: Go's net/http server, as a model ------------------------------

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_GO_VERSION = re.compile(rb"HTTP/1\.([0-9])")


class GoRefusal(Exception):
    """Go's server answers an error (400, 417, 501 ...) and closes the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


@dataclass(frozen=True)
class GoRequest:
    """One request as Go's net/http read it off the connection."""

    raw: bytes  # head and body exactly as they were on the wire
    method: str
    target: str
    minor: int
    headers: dict[str, list[str]]
    body: bytes  # the payload, de-chunked
    close: bool  # Request.Close: the server closes after answering


def _go_trim(value: bytes) -> bytes:
    """textproto.TrimString: ASCII space, tab, CR and LF only."""
    return value.strip(b" \t\r\n")


def _go_has_token(values: list[str], token: str) -> bool:
    """httpguts.HeaderValuesContainsToken: comma lists, OWS trimmed, ASCII case folded."""
    return any(part.strip(" \t").lower() == token for value in values for part in value.split(","))


def _go_line(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """textproto's ReadLine: up to LF, one trailing CR dropped."""
    end = buf.find(b"\n", pos)
    if end < 0:
        return None
    line = buf[pos:end]
    return (line[:-1] if line.endswith(b"\r") else line), end + 1


def _go_hex(line: bytes) -> int:
    """net/http/internal/chunked.go: trailing whitespace trimmed, extension cut at ';'."""
    digits = line.rstrip(b" \t\r\n").split(b";", 1)[0]
    if not digits or len(digits) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in digits):
        raise GoRefusal(400, "invalid byte in chunk length")
    return int(digits, 16)


def go_read_request(buf: bytes, after_post: bool) -> tuple[GoRequest, int] | None:
    """Read one request from the start of ``buf`` as Go's server reads it (Go 1.19-1.22):
    the request, and where the next one starts; None while incomplete."""
    pos = 0
    if after_post:  # "RFC 7230 section 3 tolerance for old buggy clients" (server.go)
        while pos < min(4, len(buf)) and buf[pos] in b"\r\n":
            pos += 1
    start = pos
    taken = _go_line(buf, pos)
    if taken is None:
        return None
    line, pos = taken
    method, _, rest = line.partition(b" ")
    target, _, proto = rest.partition(b" ")
    if _TOKEN.fullmatch(method) is None:
        raise GoRefusal(400, "invalid method")
    version = _GO_VERSION.fullmatch(proto)
    if version is None:
        raise GoRefusal(400, "malformed HTTP version")
    if not target.startswith(b"/"):
        raise GoRefusal(400, "invalid request URI")
    minor = int(version.group(1))
    headers: dict[str, list[str]] = {}
    last: str | None = None
    while True:
        taken = _go_line(buf, pos)
        if taken is None:
            return None
        line, pos = taken
        if not line:
            break
        if line[:1] in b" \t" and last is not None:  # obs-fold: a continuation line
            headers[last][-1] += " " + _go_trim(line).decode("latin-1")
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise GoRefusal(400, "malformed MIME header line")
        last = name.decode("ascii").lower()
        headers.setdefault(last, []).append(_go_trim(value).decode("latin-1"))
    hosts = headers.get("host", [])
    if (minor >= 1 and not hosts) or len(hosts) > 1:
        raise GoRefusal(400, "missing or repeated Host header")
    if hosts and re.fullmatch(r"[A-Za-z0-9.\-_:\[\]]*", hosts[0]) is None:
        raise GoRefusal(400, "malformed Host header")
    # transfer.go parseTransferEncoding: ignored on HTTP/1.0 requests (Go issue 12785);
    # else exactly one field, equal to "chunked" (ASCII case folded).
    chunked = False
    codings = headers.get("transfer-encoding")
    if codings is not None and minor >= 1:
        if len(codings) != 1 or codings[0].lower() != "chunked" or not codings[0].isascii():
            raise GoRefusal(501, "unsupported transfer encoding")
        chunked = True
    # transfer.go fixLength: repeated Content-Length only when equal; ParseUint base 10.
    lengths = headers.get("content-length", [])
    if len(set(lengths)) > 1:
        raise GoRefusal(400, "multiple Content-Length headers")
    length = 0
    if lengths and not chunked and lengths[0] != "":
        if not lengths[0].isascii() or not lengths[0].isdigit() or int(lengths[0]) >= 1 << 63:
            raise GoRefusal(400, "bad Content-Length")
        length = int(lengths[0])
    expect = headers.get("expect", [""])[0]
    if expect and not _go_has_token([expect], "100-continue"):
        raise GoRefusal(417, "expectation failed")
    connection = headers.get("connection", [])
    close = (
        _go_has_token(connection, "close")
        if minor >= 1
        else not _go_has_token(connection, "keep-alive")
    )
    if chunked:
        body = bytearray()
        while True:
            taken = _go_line(buf, pos)
            if taken is None:
                return None
            size_line, pos = taken
            size = _go_hex(size_line)
            if size == 0:
                break
            if len(buf) < pos + size + 2:
                return None
            body += buf[pos : pos + size]
            if buf[pos + size : pos + size + 2] != b"\r\n":
                raise GoRefusal(400, "malformed chunked encoding")
            pos += size + 2
        while True:  # the trailer section, read as header lines
            taken = _go_line(buf, pos)
            if taken is None:
                return None
            line, pos = taken
            if not line:
                break
        payload = bytes(body)
    else:
        if len(buf) < pos + length:
            return None
        payload = buf[pos : pos + length]
        pos += length
    request = GoRequest(
        raw=buf[start:pos],
        method=method.decode("ascii"),
        target=target.decode("latin-1"),
        minor=minor,
        headers=headers,
        body=payload,
        close=close,
    )
    return request, pos


# A reply: the bytes to answer with, and whether the connection then becomes a raw pipe.
Respond = Callable[[GoRequest], tuple[bytes, bool]]


def json_reply(status: str = "200 OK", body: bytes = b"{}") -> Respond:
    def reply(request: GoRequest) -> tuple[bytes, bool]:
        version = "HTTP/1.1" if request.minor else "HTTP/1.0"
        extra = ""
        if request.close and request.minor:
            extra = "Connection: close\r\n"
        elif not request.close and not request.minor:
            extra = "Connection: keep-alive\r\n"
        head = (
            f"{version} {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        return head.encode() + body, False

    return reply


@dataclass
class GoEngine:
    """A fake engine that reads requests as Go's net/http does and records everything."""

    path: str
    reply: Respond = field(default_factory=json_reply)
    raw: bytearray = field(default_factory=bytearray)  # every byte received, all connections
    requests: list[GoRequest] = field(default_factory=list)
    refusals: list[GoRefusal] = field(default_factory=list)
    piped: bytearray = field(default_factory=bytearray)  # bytes after a hijack
    connections: int = 0
    transports: set[asyncio.Transport] = field(default_factory=set)  # open connections
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _GoConnection(self), self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in list(self.transports):
                transport.abort()
            await self._server.wait_closed()
            await asyncio.sleep(0)


class _GoConnection(asyncio.Protocol):
    def __init__(self, engine: GoEngine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.after_post = False
        self.piping = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.engine.connections += 1
        self.engine.transports.add(self.transport)

    def data_received(self, data: bytes) -> None:
        self.engine.raw += data
        if self.piping:
            self.engine.piped += data
            return
        if self.closing:
            return
        self.buf += data
        assert self.transport is not None
        while self.buf and not self.closing and not self.piping:
            try:
                read = go_read_request(self.buf, self.after_post)
            except GoRefusal as refusal:
                self.engine.refusals.append(refusal)
                self.transport.write(
                    f"HTTP/1.1 {refusal.status} Refused\r\nContent-Type: text/plain\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                self._close()
                return
            if read is None:
                return
            request, used = read
            self.buf = self.buf[used:]
            self.after_post = request.method == "POST"
            self.engine.requests.append(request)
            answer, hijack = self.engine.reply(request)
            self.transport.write(answer)
            if hijack:
                self.piping = True
                self.engine.piped += self.buf
                self.buf = b""
            elif request.close:
                self._close()

    def _close(self) -> None:
        self.closing = True
        assert self.transport is not None
        self.transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.engine.transports.discard(self.transport)


# -- the proxy and a client ------------------------------------------------------


@pytest.fixture
async def go_engine(sockdir: Path) -> AsyncIterator[GoEngine]:
    engine = GoEngine(str(sockdir / "engine.sock"))
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture
async def proxy_path(sockdir: Path, go_engine: GoEngine) -> AsyncIterator[str]:
    """A proxy enforcing policies/default.yaml in front of the Go-like engine."""
    server = await start_proxy(sockdir / "proxy.sock", go_engine.path, POLICY)
    yield server.listeners[0].path
    await server.shutdown(grace=0.5)


Answer = tuple[int, dict[str, str], bytes]  # status, headers (lower-cased names), body


class Peer(asyncio.Protocol):
    """A client connection: collects what the proxy sends until the connection ends."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, path: str) -> Peer:
        _, peer = await asyncio.get_running_loop().create_unix_connection(cls, path)
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
        self.changed.set()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.ended.done():
            self.transport.write(data)

    def half_close(self) -> None:
        assert self.transport is not None
        if not self.ended.done():
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def replies(self, count: int, within: float = 5.0) -> list[Answer]:
        """The first ``count`` complete responses, waiting for them to arrive."""
        async with asyncio.timeout(within):
            while True:
                replies, _ = split_replies(bytes(self.data), final=self.ended.done())
                if len(replies) >= count or self.ended.done():
                    return replies
                self.changed.clear()
                await self.changed.wait()

    async def end(self, within: float = 5.0) -> list[Answer]:
        """Everything, once the proxy ended the connection (a hang fails the test)."""
        await asyncio.wait_for(asyncio.shield(self.ended), within)
        replies, rest = split_replies(bytes(self.data), final=True)
        assert not rest, f"not a response: {rest!r}"
        return replies


@dataclass
class Conversation:
    replies: list[Answer]
    raw: bytes


async def converse(
    path: str,
    pieces: list[bytes],
    *,
    half_close: bool,
    pause: float = 0.02,
    within: float = 5.0,
) -> Conversation:
    """Send ``pieces`` (one write each, ``pause`` apart), half-close if asked, and read
    until the proxy ends the connection; a proxy that never does fails the test."""
    peer = await Peer.open(path)
    try:
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(pause)
            peer.send(piece)
        if half_close:
            peer.half_close()
        replies = await peer.end(within)
    finally:
        peer.close()
    return Conversation(replies, bytes(peer.data))


def split_replies(data: bytes, *, final: bool) -> tuple[list[Answer], bytes]:
    """Split what the client received into complete responses, and what is left."""
    replies: list[Answer] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        start = end + 4
        if status < 200 or status in (204, 304):
            body, after = b"", start
        elif "content-length" in headers:
            after = start + int(headers["content-length"])
            if after > len(data):
                break
            body = data[start:after]
        elif final:
            body, after = data[start:], len(data)
        else:
            break
        replies.append((status, headers, body))
        pos = after
    return replies, data[pos:]


def assert_sockproxy_error(reply: Answer, status: int | None = None) -> None:
    """A Docker-style JSON error that says it comes from sockproxy."""
    code, headers, body = reply
    assert 400 <= code < 500
    if status is not None:
        assert code == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["message"].startswith("sockproxy: ")


# -- requests ---------------------------------------------------------------------

SMUGGLED_BODY = b'{"Image":"busybox","HostConfig":{"Privileged":true}}'
# The request every row tries to smuggle: refused by policy whenever it is read at all.
SMUGGLED = (
    b"POST /v1.41/containers/create?name=SMUGGLED HTTP/1.1\r\nHost: docker\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(SMUGGLED_BODY), SMUGGLED_BODY)
)
BENIGN_BODY = b'{"Image":"busybox"}'
CREATE = (
    b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
)
ARCHIVE = b"PUT /v1.41/containers/abc/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n"
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"


def with_length(start: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return start + extra + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


# -- the corpus ---------------------------------------------------------------------


class Outcome(Enum):
    REFUSED = "refused"  # sockproxy's 4xx JSON error, then it closes; no byte reached the engine
    DENIED = "denied"  # sockproxy's 4xx JSON error (policy); no byte reached the engine
    FORWARDED = "forwarded"  # the engine read exactly ``upstream``; the client got ``statuses``
    CUT = "cut"  # a streamed body cut before its first invalid framing line: the engine
    # got the head and at most the valid prefix ``upstream[0]``, and sockproxy closed
    TOLERATED = "tolerated"  # valid to sockproxy, refused by Go's server (which then closes):
    # refused by sockproxy too, or forwarded whole; never anything smuggled either way


@dataclass(frozen=True)
class Row:
    name: str
    data: bytes  # everything the client sends, in one write
    outcome: Outcome
    upstream: tuple[bytes, ...] = ()  # the requests the engine must read, raw
    statuses: tuple[int, ...] = ()  # FORWARDED: what the client is answered, in order
    status: int | None = 400  # REFUSED: the status of sockproxy's answer (None: any 4xx)
    closes: bool = False  # FORWARDED: the proxy ends the connection by itself


def _head(start: bytes, *lines: bytes) -> bytes:
    return start + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def _refused(name: str, data: bytes, status: int | None = 400) -> Row:
    return Row(name, data, Outcome.REFUSED, status=status)


def _cl_te() -> Iterator[Row]:
    """Content-Length with Transfer-Encoding, in either order: every parser that honours
    one of them frames the body differently from one that honours the other."""
    desync = b"0\r\n\r\n" + SMUGGLED
    for value in [
        b"chunked",
        b"Chunked",
        b"CHUNKED",
        b"chunked ",
        b" chunked",
        b"\tchunked",
        b"gzip, chunked",
        b"identity",
        b"chunked, identity",
        b"x",
    ]:
        te = b"Transfer-Encoding: " + value
        cl = b"Content-Length: %d" % len(b"0\r\n\r\n")
        yield _refused(f"cl-then-te {value!r}", _head(ARCHIVE, cl, te) + desync)
        yield _refused(f"te-then-cl {value!r}", _head(ARCHIVE, te, cl) + desync)
    yield _refused(
        "te-cl-te",
        _head(ARCHIVE, b"Transfer-Encoding: chunked", b"Content-Length: 5", b"Transfer-Encoding: x")
        + desync,
    )


def _te_spellings() -> Iterator[Row]:
    """Transfer-Encoding spelt so that some parser might not see it, next to a
    Content-Length: refused for the spelling, or read as the unrelated header it is."""
    cl = b"Content-Length: 5"
    desync = b"0\r\n\r\n" + SMUGGLED
    for line in [
        b"Transfer-Encoding : chunked",
        b"Transfer-Encoding\t: chunked",
        b"Transfer-Encoding\x0b: chunked",
        b"Transfer-Encoding\x0c: chunked",
        b"Transfer-Encoding\x00: chunked",
        b"Transfer-Encoding\xa0: chunked",
        b"Transfer-Encoding\r: chunked",
        b"\x0bTransfer-Encoding: chunked",
        b"\x0cTransfer-Encoding: chunked",
        b" Transfer-Encoding: chunked",
        b"\tTransfer-Encoding: chunked",
        b"Tr\xc3\xa4nsfer-Encoding: chunked",
        b"Transfer\xe2\x80\x90Encoding: chunked",
        b"Transfer-Encoding: \x0bchunked",
        b"Transfer-Encoding: chunked\x0b",
        b"Transfer-Encoding: \x0cchunked",
        b"Transfer-Encoding: \x00chunked",
        b"Transfer-Encoding: chunked\x00",
        b"Transfer-Encoding: chu\x00nked",
        b"Transfer-Encoding: chunked\r",
        b"Transfer-Encoding: \rchunked",
        b"Transfer-Encoding:\r\n chunked",
        b"Transfer-Encoding: chunked\r\n , identity",
        b"Transfer-Encoding: \xc2\xa0chunked",
        b"X: y\nTransfer-Encoding: chunked",
        b"X: y\rTransfer-Encoding: chunked",
    ]:
        yield _refused(f"te spelt {line!r}", _head(ARCHIVE, cl, line) + desync)
    # Not Transfer-Encoding to anyone: a Content-Length body, then a request of its own.
    for line in [b"Transfer_Encoding: chunked", b"X-Transfer-Encoding: chunked", b"TE: chunked"]:
        first = _head(ARCHIVE, cl, line) + b"0\r\n\r\n"
        yield Row(
            f"unrelated header {line!r}",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(200, 403),
        )


def _te_values() -> Iterator[Row]:
    """Transfer-Encoding alone: only one final "chunked" frames a request body."""
    body = chunked(b"hello")
    for value in [
        b"gzip",
        b"deflate",
        b"compress",
        b"identity",
        b"gzip, chunked",
        b"chunked, gzip",
        b"chunked, chunked",
        b"identity, chunked",
        b"chunked;q=1",
        b"x-chunked",
        b"chunk",
        b"chunkedd",
        b'"chunked"',
        b"",
        b"chunked\x0b",
        b"\xc3\xa7hunked",
    ]:
        yield _refused(
            f"te {value!r}", _head(ARCHIVE, b"Transfer-Encoding: " + value) + body + SMUGGLED
        )
    for first, second in [
        (b"chunked", b"chunked"),
        (b"chunked", b"gzip"),
        (b"gzip", b"chunked"),
        (b"chunked", b"identity"),
    ]:
        yield _refused(
            f"te fields {first!r} {second!r}",
            _head(ARCHIVE, b"Transfer-Encoding: " + first, b"Transfer-Encoding: " + second)
            + body
            + SMUGGLED,
        )
    for value in [b"chunked", b"Chunked", b"CHUNKED", b"  chunked\t"]:
        first = _head(ARCHIVE, b"Transfer-Encoding: " + value) + body
        yield Row(
            f"te {value!r} (valid)",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(200, 403),
        )
    # RFC 9110 lists may hold empty elements, so these say "chunked"; Go's server
    # accepts exactly one field equal to "chunked" (transfer.go) and answers 501.
    for lines in [
        (b"Transfer-Encoding: chunked,",),
        (b"Transfer-Encoding: , chunked",),
        (b"Transfer-Encoding: chunked, ,",),
        (b"Transfer-Encoding: chunked", b"Transfer-Encoding: "),
    ]:
        first = _head(ARCHIVE, *lines) + body
        yield Row(f"te list {lines!r}", first + SMUGGLED, Outcome.TOLERATED, upstream=(first,))
    # NEL and NO-BREAK SPACE are obs-text to Go, not whitespace (Python's str.strip()
    # would trim them): an unknown coding to the engine, so refused.
    for value in [b"\xa0chunked", b"chunked\x85", b"\x85chunked\xa0"]:
        yield _refused(
            f"te {value!r} (unicode space)",
            _head(ARCHIVE, b"Transfer-Encoding: " + value) + body + SMUGGLED,
        )


def _content_lengths() -> Iterator[Row]:
    body = b"12345"
    for value in [
        b"+5",
        b"-5",
        b"0x5",
        b"5.0",
        b"5e0",
        b"5,5",
        b"5, 5",
        b"5 5",
        b"",
        b"abc",
        b"five",
        b"5;x",
        b"-0",
        b"5\x00",
        b"5\x0b",
        b"\x0c5",
        b"\xa05",
        b"5\xa0",
        b"\xd9\xa5",  # ARABIC-INDIC DIGIT FIVE
        b"\xef\xbc\x95",  # FULLWIDTH DIGIT FIVE
        b"0000000000000000005",
        b"99999999999999999999",
        b"18446744073709551621",  # 2**64 + 5
    ]:
        yield _refused(
            f"content-length {value!r}",
            _head(ARCHIVE, b"Content-Length: " + value) + body + SMUGGLED,
        )
    for first, second in [(b"5", b"5"), (b"5", b"6"), (b"5", b""), (b"5", b"05")]:
        yield _refused(
            f"content-length fields {first!r} {second!r}",
            _head(ARCHIVE, b"Content-Length: " + first, b"content-length: " + second)
            + body
            + SMUGGLED,
        )
    for value in [b"5", b" 5", b"5 ", b"\t5\t", b"05", b"000000000000000005"]:
        first = _head(ARCHIVE, b"Content-Length: " + value) + body
        yield Row(
            f"content-length {value!r} (valid)",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(200, 403),
        )


def _request_lines() -> Iterator[Row]:
    """Request lines two parsers could split differently, and targets not in origin form."""
    for line in [
        b"GET http://docker/_ping HTTP/1.1",
        b"GET HTTP://docker/v1.41/containers/json HTTP/1.1",
        b"GET unix:///var/run/docker.sock HTTP/1.1",
        b"CONNECT docker:2375 HTTP/1.1",
        b"GET docker:2375 HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"GET * HTTP/1.1",
        b"PRI * HTTP/2.0",
        b"GET _ping HTTP/1.1",
        b"GET ?x HTTP/1.1",
        b"GET\t/_ping HTTP/1.1",
        b"GET /_ping\tHTTP/1.1",
        b"GET  /_ping HTTP/1.1",
        b"GET /_ping  HTTP/1.1",
        b" GET /_ping HTTP/1.1",
        b"GET /_ping HTTP/1.1 ",
        b"GET /_ping HTTP/1.1\x00",
        b"GET /_ping HTTP/1.2",
        b"GET /_ping HTTP/1.10",
        b"GET /_ping HTTP/1.01",
        b"GET /_ping HTTP/01.1",
        b"GET /_ping HTTP/0.9",
        b"GET /_ping HTTP/2.0",
        b"GET /_ping HTTP/2",
        b"GET /_ping HTTP/1",
        b"GET /_ping http/1.1",
        b"GET /_ping Http/1.1",
        b"GET /_ping HTTP /1.1",
        b"GET /_ping HTTPS/1.1",
        b"GET /_ping",
        b"GET /_ping HTTP/1.1 extra",
        b"GET /_p ing HTTP/1.1",
        b"GET /_p\x00ing HTTP/1.1",
        b"GET /_p\x7fing HTTP/1.1",
        b"GET /_p\x0bing HTTP/1.1",
        b"G(T /_ping HTTP/1.1",
        b"GET@ /_ping HTTP/1.1",
        b"G\xc3\x89T /_ping HTTP/1.1",
        b"",
    ]:
        yield _refused(f"request line {line!r}", _head(line + b"\r\n", b"Host: docker") + SMUGGLED)
    yield _refused("bare LF after the request line", b"GET /_ping HTTP/1.1\nHost: docker\r\n\r\n")
    yield _refused("bare CR in the request line", b"GET /_ping\rHTTP/1.1\r\nHost: docker\r\n\r\n")
    yield _refused("CR CR LF after the request line", b"GET /_ping HTTP/1.1\r\r\n\r\n")
    yield _refused("empty line before the request", b"\r\n" + PING)
    yield _refused("bare LF head end", b"GET /_ping HTTP/1.1\r\nHost: docker\n\n" + PING)


def _methods() -> Iterator[Row]:
    """Methods no engine route serves: refused at the frame stage (400, closed)."""
    for method in [
        b"CONNECT",
        b"TRACE",
        b"TRACK",
        b"get",
        b"Get",
        b"gET",
        b"PATCH",
        b"PROPFIND",
        b"M-SEARCH",
        b"G.E.T",
        b"GET~",
        b"A" * 4000,
        b"GET" * 1000,
        b"QUERY",
    ]:
        name = method if len(method) < 20 else method[:8] + b"...(%d)" % len(method)
        yield _refused(f"method {name!r}", _head(method + b" /_ping HTTP/1.1\r\n", b"Host: docker"))
    # The head limit (256 KiB) is about the head, not its parts.
    yield _refused("method of 300 KiB", b"A" * (300 * 1024) + b" /_ping HTTP/1.1\r\n\r\n", 431)


def _header_fields() -> Iterator[Row]:
    """Header names that are not tokens, values with controls, folding, odd line ends."""
    get = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n"
    for line in [
        b"X Foo: 1",
        b"X@Foo: 1",
        b'X"Foo: 1',
        b"X(Foo): 1",
        b"X/Foo: 1",
        b"X{Foo}: 1",
        b"X[Foo]: 1",
        b"X=Foo: 1",
        b"X,Foo: 1",
        b"X;Foo: 1",
        b"X\\Foo: 1",
        b"X?Foo: 1",
        b": 1",
        b"::1",
        b"Foo",
        b"\xc3\x84: 1",
        b"X\x00: 1",
        b"X\x7f: 1",
        b"\x1bX: 1",
        b"X: a\x00b",
        b"X: a\x7fb",
        b"X: a\x0bb",
        b"X: a\x0cb",
        b"X: a\x1bb",
        b"X: a\rb",
        b"X: a\nb",
        b"X: 1\r\n folded",
        b"X: 1\r\n\tfolded",
        b"X: 1\r\n \r\nY: 2",
        b" X: leading space",
        b"X: 1\r",
        b"X: 1\n",
    ]:
        yield _refused(f"header field {line!r}", get + line + b"\r\n\r\n" + SMUGGLED)
    for line in [b"X: \xc3\xa9", b"X: \xff\xfe", b"X:", b"X:\t", b"X-Y_Z~!#$%&'*+.^`|: 1"]:
        first = get + line + b"\r\n\r\n"
        yield Row(
            f"header field {line!r} (valid)",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(200, 403),
        )
    # Go's server answers 400 to these (server.go readRequest): not a framing question.
    for lines in [
        (b"Host: docker", b"Host: docker"),
        (b"Host: docker", b"host: evil"),
        (b"Host: a, b",),
        (b"Host: a b",),
        (),
    ]:
        first = _head(b"GET /_ping HTTP/1.1\r\n", *lines)
        yield Row(f"host {lines!r}", first + SMUGGLED, Outcome.TOLERATED, upstream=(first,))


def _chunks() -> Iterator[Row]:
    """Chunked bodies on an inspected endpoint: read whole before anything is sent."""
    start = CREATE + b"Transfer-Encoding: chunked\r\n\r\n"
    payload = BENIGN_BODY  # 0x13 bytes
    size = b"%x" % len(payload)

    def valid(name: str, body: bytes) -> Row:
        return Row(
            f"chunked body {name} (valid)",
            start + body + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(start + body,),
            statuses=(200, 403),
        )

    yield valid("plain", chunked(payload))
    yield valid("upper-case hex", chunked(payload[:10], payload[10:]).upper())
    yield valid("one byte chunks", chunked(*(payload[i : i + 1] for i in range(len(payload)))))
    yield valid("leading zeros", b"0013\r\n" + payload + b"\r\n0\r\n\r\n")
    yield valid("extension", size + b";a=b\r\n" + payload + b"\r\n0\r\n\r\n")
    yield valid("bare extension", size + b";a\r\n" + payload + b"\r\n0\r\n\r\n")
    yield valid("quoted extension", size + b';a="x;y\\"z"\r\n' + payload + b"\r\n0\r\n\r\n")
    yield valid("extension on the last chunk", size + b"\r\n" + payload + b"\r\n0;a=b\r\n\r\n")
    yield valid("last chunk 000", size + b"\r\n" + payload + b"\r\n000\r\n\r\n")
    yield valid("trailer", size + b"\r\n" + payload + b"\r\n0\r\nX-Sum: 1\r\n\r\n")
    # Fields that frame a message have no meaning in a trailer; Go keeps trailers
    # apart (Request.Trailer), so the engine frames nothing by them.
    for field_line in [
        b"Content-Length: 100",
        b"Transfer-Encoding: chunked",
        b"Host: evil",
        b"Content-Type: application/x-www-form-urlencoded",
    ]:
        yield valid(
            f"trailer {field_line!r}",
            size + b"\r\n" + payload + b"\r\n0\r\n" + field_line + b"\r\n\r\n",
        )

    def bad(name: str, body: bytes) -> Row:
        return _refused(f"chunked body {name}", start + body + SMUGGLED)

    for line in [
        b"0x13",
        b"+13",
        b"-13",
        b" 13",
        b"13 ",
        b"\t13",
        b"13\t",
        b"13;",
        b"13;=x",
        b"13;a=",
        b'13;a="x',
        b"13;a b",
        b"13;a=b c",
        b"13;\x00",
        b"1_3",
        b"13\x00",
        b"13\x0b",
        b"",
        b"g",
        b"1g",
        b"fffffffffffffffff",
        b"10000000000000013",
        b"0000000000000013",
        b"\xd9\xa1\xd9\xa3",
    ]:
        yield bad(f"size {line!r}", line + b"\r\n" + payload + b"\r\n0\r\n\r\n")
    yield bad("size ended by bare LF", size + b"\n" + payload + b"\r\n0\r\n\r\n")
    yield bad("size ended by CR CR LF", size + b"\r\r\n" + payload + b"\r\n0\r\n\r\n")
    for ending in [b"\n", b"\r", b"XX", b"\n\r", b" \r\n", b""]:
        yield bad(f"data ended by {ending!r}", size + b"\r\n" + payload + ending + b"0\r\n\r\n")
    yield bad("size too small", b"12\r\n" + payload + b"\r\n0\r\n\r\n")
    yield bad("size too large", b"14\r\n" + payload + b"\r\n0\r\n\r\n")
    for line in [b"0x0", b"-0", b" 0", b"0 ", b"0\n"]:
        yield bad(f"last chunk {line!r}", size + b"\r\n" + payload + b"\r\n" + line + b"\r\n\r\n")
    for trailer in [
        b"bad line",
        b" folded",
        b"X: \x00",
        b"X : y",
        b"X: y\nY: z",
        b"X: y\r",
        b": y",
    ]:
        yield bad(
            f"trailer {trailer!r}",
            size + b"\r\n" + payload + b"\r\n0\r\n" + trailer + b"\r\n\r\n",
        )
    yield bad("trailer section ended by bare LF", size + b"\r\n" + payload + b"\r\n0\r\n\n")
    # RFC 9112 allows whitespace before ";" (BWS); Go cuts the line at ";" and
    # then refuses the size "13 " (chunked.go), answering 400 and closing.
    for line in [b"13 ;a=b", b"13\t;a=b"]:
        first = start + line + b"\r\n" + payload + b"\r\n0\r\n\r\n"
        yield Row(f"chunked body size {line!r}", first + SMUGGLED, Outcome.TOLERATED, (first,))


def _streamed_chunks() -> Iterator[Row]:
    """Chunked bodies streamed as they arrive: cut at the first invalid framing line."""
    head = _head(ARCHIVE, b"Transfer-Encoding: chunked")
    good = b"5\r\nhello\r\n"
    for name, rest in [
        ("hex prefix", b"0x5\r\nworld\r\n0\r\n\r\n"),
        ("signed size", b"+5\r\nworld\r\n0\r\n\r\n"),
        ("bare LF size", b"5\nworld\r\n0\r\n\r\n"),
        ("no CRLF after data", b"5\r\nworldX0\r\n\r\n"),
        ("invalid extension", b"5;=\r\nworld\r\n0\r\n\r\n"),
        ("last chunk with space", b"0 \r\n\r\n"),
        ("invalid trailer", b"0\r\nbad trailer\r\n\r\n"),
        ("request in a chunk-size line", b"POST /v1.41/containers/create HTTP/1.1\r\n\r\n"),
    ]:
        yield Row(
            f"streamed chunked body: {name}",
            head + good + rest + SMUGGLED,
            Outcome.CUT,
            upstream=(head + good,),
        )


def _upgrades_and_expectations() -> Iterator[Row]:
    """Upgrade and Expect on endpoints that never hijack: ordinary requests."""
    create = with_length(CREATE, BENIGN_BODY, b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
    yield Row(
        "upgrade on containers/create",
        create + SMUGGLED,
        Outcome.FORWARDED,
        upstream=(create,),
        statuses=(200, 403),
    )
    for lines in [
        (b"Connection: Upgrade", b"Upgrade: tcp"),
        (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQ"),
        (b"Connection: Upgrade",),
        (b"Upgrade: websocket",),
    ]:
        first = _head(b"GET /v1.41/containers/json HTTP/1.1\r\n", b"Host: docker", *lines)
        yield Row(
            f"upgrade {lines!r} on containers/json",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(200, 403),
        )
    upload = with_length(ARCHIVE, SMUGGLED, b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
    yield Row(
        "upgrade with a request as the body",
        upload + SMUGGLED,
        Outcome.FORWARDED,
        upstream=(upload,),
        statuses=(200, 403),
    )
    for value in [b"100-continue", b"100-Continue"]:
        first = with_length(CREATE, BENIGN_BODY, b"Expect: " + value + b"\r\n")
        yield Row(
            f"expect {value!r} on an inspected body",
            first + SMUGGLED,
            Outcome.FORWARDED,
            upstream=(first,),
            statuses=(100, 200, 403),
        )
    first = with_length(ARCHIVE, b"12345", b"Expect: 100-continue\r\n")
    yield Row(
        "expect 100-continue on a streamed body",
        first + SMUGGLED,
        Outcome.FORWARDED,
        upstream=(first,),
        statuses=(200, 403),
    )
    # Go answers 417 to an expectation it does not know (and to the first Expect
    # field when there are several), then closes.
    for extra in [b"Expect: 200-ok\r\n", b"Expect: foo\r\nExpect: 100-continue\r\n"]:
        first = with_length(CREATE, BENIGN_BODY, extra)
        yield Row(f"expect {extra!r}", first + SMUGGLED, Outcome.TOLERATED, upstream=(first,))
    yield _refused(
        "expect 100-continue on an invalid head",
        _head(CREATE, b"Expect: 100-continue", b"Content-Length: 5", b"Content-Length: 6"),
    )


def _closes() -> Iterator[Row]:
    """A request whose body holds a whole request, on a connection that then closes."""
    close = with_length(ARCHIVE, SMUGGLED, b"Connection: close\r\n")
    yield Row(
        "connection close, a request as the body",
        close + SMUGGLED,
        Outcome.FORWARDED,
        upstream=(close,),
        statuses=(200,),
        closes=True,
    )
    old = b"PUT /v1.41/containers/abc/archive?path=/tmp HTTP/1.0\r\nHost: docker\r\n"
    first = with_length(old, SMUGGLED)
    yield Row(
        "HTTP/1.0, a request as the body",
        first + SMUGGLED,
        Outcome.FORWARDED,
        upstream=(first,),
        statuses=(200,),
        closes=True,
    )
    # Go ignores Transfer-Encoding on HTTP/1.0 requests (net/http transfer.go, issue
    # 12785): it would read no body, then the chunk lines as the next request.
    for extra in [b"", b"Connection: keep-alive"]:
        yield _refused(
            f"HTTP/1.0 with Transfer-Encoding {extra!r}",
            _head(old, *([extra] if extra else []), b"Transfer-Encoding: chunked")
            + chunked(SMUGGLED)
            + SMUGGLED,
        )
    yield _refused(
        "HTTP/1.0 with Transfer-Encoding and Content-Length",
        _head(old, b"Transfer-Encoding: chunked", b"Content-Length: 5") + b"0\r\n\r\n" + SMUGGLED,
    )


CORPUS: list[Row] = [
    *_cl_te(),
    *_te_spellings(),
    *_te_values(),
    *_content_lengths(),
    *_request_lines(),
    *_methods(),
    *_header_fields(),
    *_chunks(),
    *_streamed_chunks(),
    *_upgrades_and_expectations(),
    *_closes(),
]


def _params() -> list[object]:
    names = [row.name for row in CORPUS]
    assert len(names) == len(set(names)), "corpus row names are unique"
    return [
        pytest.param(
            row,
            id=row.name,
        )
        for row in CORPUS
    ]


def test_corpus_size() -> None:
    """The table stays large: every family of hostile framing has many spellings."""
    assert len({row.data for row in CORPUS}) == len(CORPUS) >= 150


async def _settle(engine: GoEngine) -> None:
    """Let the engine read whatever was still on its way to it (a few loop turns: every
    byte the proxy sent upstream was sent before the client got its last answer)."""
    for _ in range(3):
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("row", _params())
async def test_hostile_framing(row: Row, proxy_path: str, go_engine: GoEngine) -> None:
    """Refused, or framed as Go frames it; never a byte of a refused request upstream,
    never a smuggled request read by the engine."""
    peer = await Peer.open(proxy_path)
    try:
        peer.send(row.data)
        # A refusal must end the connection without our help; so must a request
        # that closes it. Otherwise we end our side and the proxy follows.
        if row.outcome not in (Outcome.REFUSED, Outcome.CUT) and not row.closes:
            peer.half_close()
        answers = await peer.end()
    finally:
        peer.close()
    await _settle(go_engine)

    read = [request.raw for request in go_engine.requests]
    assert not any(
        b"SMUGGLED" in request.raw.split(b"\r\n\r\n")[0] for request in go_engine.requests
    )
    assert read == list(row.upstream[: len(read)]), "the engine read only what it was meant to"
    if row.outcome in (Outcome.REFUSED, Outcome.DENIED):
        assert answers, "answered"
        assert_sockproxy_error(answers[0], row.status)
        assert bytes(go_engine.raw) == b""
        assert go_engine.connections == 0
    if row.outcome is Outcome.REFUSED:
        assert len(answers) == 1
        assert answers[0][1].get("connection") == "close"
    elif row.outcome is Outcome.DENIED:
        assert all(400 <= status < 500 for status, _, _ in answers)
    elif row.outcome is Outcome.FORWARDED:
        assert read == list(row.upstream)
        assert bytes(go_engine.raw) == b"".join(row.upstream)
        assert not go_engine.refusals
        assert [status for status, _, _ in answers] == list(row.statuses)
        for status, headers, body in answers:
            if status >= 400:
                assert_sockproxy_error((status, headers, body), None)
    elif row.outcome is Outcome.CUT:
        assert read == []
        head = row.upstream[0].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        assert bytes(go_engine.raw).startswith(head)
        assert row.upstream[0].startswith(bytes(go_engine.raw))
        assert len(answers) == 1
        assert_sockproxy_error(answers[0], 400)
    else:  # TOLERATED: refused, or forwarded whole and refused by Go's server
        if not go_engine.raw:
            assert_sockproxy_error(answers[0], 400)
        else:
            assert bytes(go_engine.raw).startswith(row.upstream[0][: len(go_engine.raw)])
            assert b"SMUGGLED" not in bytes(go_engine.raw)[len(row.upstream[0]) :]


# -- pipelining: each request decided on its own --------------------------------------

CONTAINERS = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n"
CHUNKED_SMUGGLED = (
    b"POST /v1.41/containers/create?name=SMUGGLED HTTP/1.1\r\nHost: docker\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(SMUGGLED_BODY[:20], SMUGGLED_BODY[20:])
)
MIDDLE = {
    # name: (the second request, its status, whether the third one is still read)
    "privileged create": (SMUGGLED, 403, True),
    "chunked privileged create": (CHUNKED_SMUGGLED, 403, True),
    "unknown endpoint": (b"GET /v1.41/no/such/thing HTTP/1.1\r\nHost: docker\r\n\r\n", 403, True),
    "denied operation": (
        b"POST /v4.0.0/libpod/containers/abc/mount HTTP/1.1\r\nHost: docker\r\n\r\n",
        403,
        True,
    ),
    "refused streamed body": (
        b"POST /v1.41/no/such/thing HTTP/1.1\r\nHost: docker\r\nContent-Length: 5\r\n\r\n12345",
        403,
        False,
    ),
    "form body": (
        b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\n\r\n"
        b"networkmode=host",
        400,
        False,
    ),
    "framing error": (b"GET /_ping HTTP/1.1\r\nHost : docker\r\n\r\n", 400, False),
}


@pytest.mark.parametrize("together", [True, False], ids=["one write", "a write per request"])
@pytest.mark.parametrize("middle", MIDDLE.keys())
async def test_pipelined_requests_are_each_decided_alone(
    middle: str, together: bool, proxy_path: str, go_engine: GoEngine
) -> None:
    """1 and 3 are fine, 2 is refused: the engine reads 1 and 3 in order (or 1 only,
    when the refusal has to end the connection), and never a byte of 2."""
    second, status, goes_on = MIDDLE[middle]
    requests = [PING, second, CONTAINERS]
    conversation = await converse(
        proxy_path, [b"".join(requests)] if together else requests, half_close=goes_on
    )
    statuses = [answer[0] for answer in conversation.replies]
    assert statuses == ([200, status, 200] if goes_on else [200, status])
    assert_sockproxy_error(conversation.replies[1], status)
    await _settle(go_engine)
    assert [r.raw for r in go_engine.requests] == ([PING, CONTAINERS] if goes_on else [PING])
    assert bytes(go_engine.raw) == b"".join(r.raw for r in go_engine.requests)


async def test_a_request_after_a_refusal_whose_body_came_later_is_not_stalled(
    proxy_path: str, go_engine: GoEngine
) -> None:
    head, _, body = SMUGGLED.partition(b"\r\n\r\n")
    peer = await Peer.open(proxy_path)
    try:
        peer.send(PING + head + b"\r\n\r\n")
        await asyncio.sleep(0.05)
        peer.send(body + CONTAINERS)  # the body of the refused create, then request 3
        answers = await peer.replies(3, within=1.0)
    finally:
        peer.close()
    assert [answer[0] for answer in answers] == [200, 403, 200]


# -- hijacks: piping only after the engine switched on an endpoint that hijacks -------

EXEC_BODY = b'{"Detach":false,"Tty":false}'
EXEC_START = with_length(
    b"POST /v1.41/exec/abc/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
    b"Upgrade: tcp\r\nContent-Type: application/json\r\n",
    EXEC_BODY,
)
NOT_HIJACKS = {
    "404 no such exec": json_reply("404 Not Found", b'{"message":"No such exec instance: abc"}'),
    "409 not running": json_reply("409 Conflict", b'{"message":"container abc is not running"}'),
    "200 with a length": json_reply("200 OK", b"{}"),
    "500": json_reply("500 Internal Server Error", b'{"message":"oops"}'),
}


@pytest.mark.parametrize("answer", NOT_HIJACKS.keys())
async def test_early_stdin_after_a_non_hijack_answer_is_the_next_request(
    answer: str, proxy_path: str, go_engine: GoEngine
) -> None:
    """Bytes sent after an exec start, before the engine answered, are stdin only if
    the engine hijacks; otherwise they are the next request, refused as malformed."""
    go_engine.reply = NOT_HIJACKS[answer]
    conversation = await converse(
        proxy_path, [EXEC_START + b"echo pwned\r\n\r\n"], half_close=False
    )
    assert [answer[0] for answer in conversation.replies][1:] == [400]
    assert_sockproxy_error(conversation.replies[1], 400)
    await _settle(go_engine)
    assert bytes(go_engine.raw) == EXEC_START
    assert bytes(go_engine.piped) == b""


@pytest.mark.parametrize("answer", NOT_HIJACKS.keys())
async def test_early_bytes_that_form_a_request_are_decided_on_their_own(
    answer: str, proxy_path: str, go_engine: GoEngine
) -> None:
    go_engine.reply = NOT_HIJACKS[answer]
    conversation = await converse(proxy_path, [EXEC_START + SMUGGLED], half_close=True)
    assert [answer[0] for answer in conversation.replies][1:] == [403]
    await _settle(go_engine)
    assert bytes(go_engine.raw) == EXEC_START


async def test_early_stdin_after_a_hijack_is_piped_in_order(
    proxy_path: str, go_engine: GoEngine
) -> None:
    """The contrast: when the engine does switch, the same bytes are stdin."""

    def upgrade(request: GoRequest) -> tuple[bytes, bool]:
        return b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", True

    go_engine.reply = upgrade
    peer = await Peer.open(proxy_path)
    try:
        peer.send(EXEC_START + b"echo one\n")
        await peer.replies(1)
        peer.send(b"echo two\n")
        await asyncio.sleep(0.05)
    finally:
        peer.close()
    assert bytes(go_engine.piped) == b"echo one\necho two\n"


async def test_a_101_on_an_endpoint_that_cannot_hijack_is_never_piped(
    proxy_path: str, go_engine: GoEngine
) -> None:
    """An engine (or a routing disagreement) that switches protocols on containers/create
    must not turn the client's next request into raw bytes nobody classified."""

    def upgrade(request: GoRequest) -> tuple[bytes, bool]:
        return b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", True

    go_engine.reply = upgrade
    create = with_length(CREATE, BENIGN_BODY, b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
    peer = await Peer.open(proxy_path)
    try:
        peer.send(create + SMUGGLED)
        await asyncio.sleep(0.2)
        assert b"SMUGGLED" not in bytes(go_engine.raw)
        await peer.end(within=1.0)  # the connection is cut, as for a rogue raw stream
    finally:
        peer.close()


# -- the engine side: a response ends where its framing says --------------------------


async def test_bytes_after_a_bodiless_response_never_answer_another_request(
    proxy_path: str, go_engine: GoEngine
) -> None:
    answered: list[GoRequest] = []

    def extra(request: GoRequest) -> tuple[bytes, bool]:
        answered.append(request)
        if len(answered) == 1:
            return (
                b"HTTP/1.1 204 No Content\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
            ), False
        return json_reply()(request)

    go_engine.reply = extra
    first, second = await Peer.open(proxy_path), await Peer.open(proxy_path)
    try:
        first.send(PING)
        assert [a[0] for a in await first.replies(1)] == [204]
        second.send(PING)
        answers = await second.replies(1)
    finally:
        first.close()
        second.close()
    assert answers[0][2] != b"SMUGGLED"


# -- refused uploads: drained to their end, then closed --------------------------------

REFUSED_UPLOAD = b"POST /v1.41/no/such/thing HTTP/1.1\r\nHost: docker\r\n"


async def test_a_refused_chunked_upload_is_drained_to_its_end(
    proxy_path: str, go_engine: GoEngine
) -> None:
    """A chunk-size line split across two reads must not end the drain (and reset the
    client's upload) before the body's last chunk."""
    peer = await Peer.open(proxy_path)
    try:
        peer.send(REFUSED_UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n")
        assert [a[0] for a in await peer.replies(1)] == [403]
        for piece in [b"5\r\nhello\r\n1", b"0\r\n" + b"x" * 16 + b"\r\n"]:
            await asyncio.sleep(0.05)
            peer.send(piece)
        await asyncio.sleep(0.2)
        assert not peer.ended.done(), "still draining: the last chunk has not been sent"
        peer.send(b"0\r\n\r\n")
        await peer.end(within=1.0)
    finally:
        peer.close()
    assert bytes(go_engine.raw) == b""


async def test_a_refused_upload_the_client_abandons_is_closed_at_once(
    proxy_path: str, go_engine: GoEngine
) -> None:
    peer = await Peer.open(proxy_path)
    try:
        peer.send(REFUSED_UPLOAD + b"Content-Length: 100\r\n\r\nabc")
        assert [a[0] for a in await peer.replies(1)] == [403]
        peer.half_close()
        await peer.end(within=1.0)
    finally:
        peer.close()


async def test_a_pipelined_body_cut_short_by_the_clients_end_is_closed_at_once(
    proxy_path: str, go_engine: GoEngine
) -> None:
    """The client ends its side while request 1 is in flight; request 2's body is
    incomplete and can never complete: sockproxy closes once 1 is answered (with an
    error for 2, or without a word), and 2 never reaches the engine."""
    peer = await Peer.open(proxy_path)
    try:
        peer.send(PING + with_length(CREATE, BENIGN_BODY)[:-5])
        peer.half_close()
        answers = await peer.end(within=1.0)
    finally:
        peer.close()
    assert answers[0][0] == 200
    for answer in answers[1:]:
        assert_sockproxy_error(answer)
    assert [request.raw for request in go_engine.requests] == [PING]
