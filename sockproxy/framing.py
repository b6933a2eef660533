"""Frame stage: HTTP/1.1 message heads and body framing, sans I/O.

In: the raw bytes of a request or response head (up to and including the
blank line), or one chunk-size line. Out: frozen heads that say how the body
that follows is framed. The raw head bytes are kept so that exactly what was
read is what gets forwarded.

Refused (``FramingError``, a 400 for requests): anything two HTTP parsers
could frame differently - ``Content-Length`` with ``Transfer-Encoding``,
repeated or malformed ``Content-Length``, codings other than one final
``chunked``, obsolete line folding, bare CR or LF, invalid header names or
values, targets that are not in origin form, unknown HTTP versions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum

from sockproxy.errors import FramingError

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"

# RFC 9110 token characters for methods and header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Origin-form request target: starts with "/", no whitespace or controls.
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e\x80-\xff]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})((?:[ \t]*;[^\r\n]*)?)\r\n")
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"(?:[^\"\\\r\n]|\\.)*\"))?)*"
)
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r\n")
# A whole field section: "name: value" lines, each ending in CRLF, then CRLF.
# One C-level match validates every line (token names touching their colon,
# no obs-fold, no bare CR or LF, no NUL or DEL) in one go.
_FIELD_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n")
_FIELD = re.compile(rb"([^:\r\n]+):[ \t]*([^\r\n]*?)[ \t]*\r\n")
# The only response fields the relay needs; matched after a line start.
_RESPONSE_FRAMING = re.compile(
    rb"\n(content-length|transfer-encoding|connection):[ \t]*([^\r\n]*?)[ \t]*\r", re.IGNORECASE
)


class Framing(Enum):
    """How the body after a head is delimited."""

    NONE = "none"  # no body at all
    LENGTH = "length"  # exactly Content-Length bytes
    CHUNKED = "chunked"  # chunked transfer coding
    UNTIL_CLOSE = "until-close"  # responses only: the body ends when the peer closes


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A validated request head; ``raw`` is forwarded byte for byte."""

    method: str
    target: str
    http_minor: int
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, value) in order
    framing: Framing
    content_length: int
    keep_alive: bool
    upgrade: bool  # Connection: Upgrade together with an Upgrade header
    raw: bytes

    def header(self, name: str) -> str | None:
        """The last value of a header (lower-case name), or None."""
        return _last(self.headers, name)


def rebuild_head(
    head: RequestHead, *, target: str | None = None, body_length: int | None = None
) -> bytes:
    """A request head sockproxy rewrote: another target (an object's full ID)
    and/or a body of ``body_length`` bytes in place of the client's framing."""
    lines = [f"{head.method} {target or head.target} HTTP/1.{head.http_minor}"]
    for name, value in head.headers:
        if body_length is None or name not in ("content-length", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    if body_length is not None:
        lines.append(f"content-length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed response head; ``raw`` is forwarded byte for byte."""

    status: int
    http_minor: int
    framing: Framing
    content_length: int
    keep_alive: bool
    raw: bytes


def _last(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in reversed(headers):
        if key == name:
            return value
    return None


def _fields(raw: bytes, start: int) -> tuple[tuple[str, str], ...]:
    """Validate the field section of ``raw`` from ``start`` and split it."""
    if _FIELD_BLOCK.fullmatch(raw, start) is None:
        if not raw.endswith(HEAD_END):
            raise FramingError("incomplete message head")
        raise FramingError("invalid header field (bad name, value, folding or line end)")
    return tuple(
        (name.decode("ascii").lower(), value.decode("latin-1"))
        for name, value in _FIELD.findall(raw, start)
    )


def _tokens(value: str) -> list[str]:
    # Only HTTP's optional whitespace (SP, HTAB) is trimmed: str.strip() would
    # also drop NEL and NO-BREAK SPACE, which Go keeps ("chunked\x85" is not
    # chunked to the engine).
    return [part.strip(" \t").lower() for part in value.split(",") if part.strip(" \t")]


def _body_framing(
    headers: tuple[tuple[str, str], ...],
) -> tuple[Framing, int]:
    lengths = [v for k, v in headers if k == "content-length"]
    codings = [c for k, v in headers if k == "transfer-encoding" for c in _tokens(v)]
    has_te = any(k == "transfer-encoding" for k, _ in headers)
    if has_te:
        if lengths:
            raise FramingError("both Content-Length and Transfer-Encoding")
        if codings != ["chunked"]:
            raise FramingError("unsupported Transfer-Encoding")
        return Framing.CHUNKED, 0
    if not lengths:
        return Framing.NONE, 0
    if len(lengths) > 1:
        raise FramingError("repeated Content-Length")
    if _DIGITS.fullmatch(lengths[0].encode("latin-1")) is None:
        raise FramingError("malformed Content-Length")
    length = int(lengths[0])
    return (Framing.LENGTH if length else Framing.NONE), length


def _keep_alive(http_minor: int, headers: tuple[tuple[str, str], ...]) -> bool:
    options = [t for k, v in headers if k == "connection" for t in _tokens(v)]
    if "close" in options:
        return False
    return http_minor == 1 or "keep-alive" in options


# Clients repeat the same heads (a ping loop, a poll): the parse is pure and
# its result frozen, so a bounded cache skips the work for a repeat.
@functools.lru_cache(maxsize=1024)
def parse_request_head(raw: bytes) -> RequestHead:
    """Validate and parse a request head that ends with CRLF CRLF."""
    eol = raw.find(CRLF)
    line = raw[:eol] if eol >= 0 else raw
    if b"\r" in line or b"\n" in line:
        raise FramingError("bare CR or LF in the request line")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise FramingError("malformed request line")
    method, target, version = parts
    if _TOKEN.fullmatch(method) is None:
        raise FramingError("invalid method")
    if _ORIGIN_FORM.fullmatch(target) is None:
        raise FramingError("request target must be an absolute path")
    if version == b"HTTP/1.1":
        minor = 1
    elif version == b"HTTP/1.0":
        minor = 0
    else:
        raise FramingError("unsupported HTTP version")
    headers = _fields(raw, eol + 2)
    framing, length = _body_framing(headers)
    if minor == 0 and framing is Framing.CHUNKED:
        # Go ignores Transfer-Encoding on HTTP/1.0 requests (net/http
        # transfer.go): it would read no body, then the chunks as a request.
        raise FramingError("Transfer-Encoding in an HTTP/1.0 request")
    connection = [t for k, v in headers if k == "connection" for t in _tokens(v)]
    upgrade = "upgrade" in connection and any(k == "upgrade" for k, _ in headers)
    return RequestHead(
        method=method.decode("ascii"),
        target=target.decode("latin-1"),
        http_minor=minor,
        headers=headers,
        framing=framing,
        content_length=length,
        keep_alive=_keep_alive(minor, headers),
        upgrade=upgrade,
        raw=raw,
    )


def parse_response_head(raw: bytes, request_method: str) -> ResponseHead:
    """Parse a response head from the engine for a request of ``request_method``."""
    match = _STATUS_LINE.match(raw)
    if match is None:
        raise FramingError("malformed status line from the engine")
    minor = int(match.group(1))
    status = int(match.group(2))
    # Only the fields that frame the body are read: the head is forwarded as
    # the engine wrote it (Go's net/http never emits an invalid field), and
    # the client frames the body by these same fields.
    headers = tuple(
        (name.decode("ascii").lower(), value.decode("latin-1"))
        for name, value in _RESPONSE_FRAMING.findall(raw, match.end() - 1)
    )
    framing, length = _body_framing(headers)
    keep_alive = _keep_alive(minor, headers)
    # RFC 9112 section 6.3: these responses never carry a body.
    if request_method == "HEAD" or status < 200 or status in (204, 304):
        framing, length = Framing.NONE, 0
    elif framing is Framing.NONE and not any(k == "content-length" for k, _ in headers):
        framing = Framing.UNTIL_CLOSE
        keep_alive = False
    return ResponseHead(
        status=status,
        http_minor=minor,
        framing=framing,
        content_length=length,
        keep_alive=keep_alive,
        raw=raw,
    )


def parse_chunk_size(line: bytes) -> int:
    """The size from one chunk-size line (with its CRLF); extensions are checked."""
    match = _CHUNK_SIZE.fullmatch(line)
    if match is None or _CHUNK_EXT.fullmatch(match.group(2)) is None:
        raise FramingError("invalid chunk size line")
    return int(match.group(1), 16)


def check_trailer_line(line: bytes) -> None:
    """A trailer field line (with CRLF) must be a valid header field."""
    if line != CRLF and _FIELD_BLOCK.fullmatch(line + CRLF) is None:
        raise FramingError("invalid chunked trailer")


# -- body scanners --------------------------------------------------------------
# A scanner is fed the bytes that follow a head and says how many of them
# belong to the body and may be forwarded now; ``done`` is set once the body
# ended. Bytes after the end belong to the next message. A chunked body's
# framing lines are only passed once complete and validated, so the receiver
# can never see a different boundary than the one we checked.

MAX_LINE = 4096  # longest chunk-size or trailer line accepted


class LengthBody:
    """Exactly ``length`` bytes."""

    __slots__ = ("done", "remaining")

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def feed(self, data: bytes | bytearray) -> int:
        take = min(len(data), self.remaining)
        self.remaining -= take
        self.done = self.remaining == 0
        return take


class UntilCloseBody:
    """Everything until the sender closes (responses only)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes | bytearray) -> int:
        return len(data)


class ChunkedBody:
    """One chunked body, through its last chunk and trailer section."""

    __slots__ = ("done", "remaining", "state")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self.state = self._SIZE
        self.remaining = 0
        self.done = False

    def feed(self, data: bytes | bytearray) -> int:
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self.state == self._DATA:
                take = min(self.remaining, end - pos)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self._DATA_END
            elif self.state == self._DATA_END:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != CRLF:
                    raise FramingError("chunk data not followed by CRLF")
                pos += 2
                self.state = self._SIZE
            else:
                eol = data.find(CRLF, pos, pos + MAX_LINE)
                if eol < 0:
                    if end - pos >= MAX_LINE:
                        raise FramingError("chunk framing line too long")
                    break
                line = bytes(data[pos : eol + 2])
                pos = eol + 2
                if self.state == self._SIZE:
                    self.remaining = parse_chunk_size(line)
                    self.state = self._DATA if self.remaining else self._TRAILER
                else:
                    check_trailer_line(line)
                    self.done = line == CRLF
        return pos


BodyScanner = LengthBody | ChunkedBody | UntilCloseBody


def body_scanner(framing: Framing, length: int) -> BodyScanner:
    """The scanner for a body framed as ``framing``."""
    if framing is Framing.CHUNKED:
        return ChunkedBody()
    if framing is Framing.UNTIL_CLOSE:
        return UntilCloseBody()
    return LengthBody(length)


def dechunk(raw: bytes) -> bytes:
    """The payload of a complete, already validated chunked body."""
    payload = bytearray()
    pos = 0
    while True:
        eol = raw.index(CRLF, pos)
        size = parse_chunk_size(raw[pos : eol + 2])
        if size == 0:
            return bytes(payload)
        payload += raw[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
