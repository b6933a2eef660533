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

import re
from dataclasses import dataclass
from enum import Enum

from sockproxy.errors import FramingError

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"

# RFC 9110 token characters for methods and header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, obs-text, SP and HTAB; never CR, LF, NUL or DEL.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Origin-form request target: starts with "/", no whitespace or controls.
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e\x80-\xff]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})((?:[ \t]*;[^\r\n]*)?)\r\n")
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"(?:[^\"\\\r\n]|\\.)*\"))?)*"
)
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")


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


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed response head; ``raw`` is forwarded byte for byte."""

    status: int
    http_minor: int
    headers: tuple[tuple[str, str], ...]
    framing: Framing
    content_length: int
    keep_alive: bool
    raw: bytes

    def header(self, name: str) -> str | None:
        return _last(self.headers, name)


def _last(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in reversed(headers):
        if key == name:
            return value
    return None


def _split_fields(lines: list[bytes]) -> tuple[tuple[str, str], ...]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise FramingError("malformed header line")
        # A name must be a token and touch its colon: "Name :" and obsolete
        # line folding (a line starting with whitespace) are both refused.
        if _TOKEN.fullmatch(name) is None:
            raise FramingError("invalid header name")
        value = value.strip(b" \t")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise FramingError("invalid header value")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return tuple(fields)


def _split_head(raw: bytes) -> list[bytes]:
    if not raw.endswith(HEAD_END):
        raise FramingError("incomplete message head")
    lines = raw[: -len(HEAD_END)].split(CRLF)
    # Any CR or LF left inside a line was a bare one: lenient parsers treat
    # a bare LF as a line end, strict ones as data, so it frames ambiguously.
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise FramingError("bare CR or LF in message head")
    return lines


def _tokens(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


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


def parse_request_head(raw: bytes) -> RequestHead:
    """Validate and parse a request head that ends with CRLF CRLF."""
    lines = _split_head(raw)
    parts = lines[0].split(b" ")
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
    headers = _split_fields(lines[1:])
    framing, length = _body_framing(headers)
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
    lines = _split_head(raw)
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise FramingError("malformed status line from the engine")
    minor = int(match.group(1))
    status = int(match.group(2))
    headers = _split_fields(lines[1:])
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
        headers=headers,
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
    if line != CRLF:
        if not line.endswith(CRLF) or b"\r" in line[:-2] or b"\n" in line[:-2]:
            raise FramingError("invalid chunked trailer")
        _split_fields([line[:-2]])
