"""Frame and classify stages, as properties: what holds for every input, not one.

Hypothesis drives the head parsers, the body scanners, ``dechunk`` and
``classify`` with hostile spellings; a bounded fuzz then drives the real
``ClientSide`` protocol object with mutated byte streams against an
in-memory engine. The invariants: nothing raises but ``FramingError``; a
head sockproxy accepts is framed as Go's net/http (both engines) frames it,
or refused by Go; spellings the engines read alike get one reading; a
request the classifier can't place is refused; the engine only ever reads
heads that parse under the strict parser, for endpoints that were placed.
"""

from __future__ import annotations

import asyncio
import random
import socket
import string
import time
from collections.abc import Callable, Iterator
from typing import Any, cast
from urllib.parse import quote

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from sockproxy import server as server_module
from sockproxy.client import ClientSide
from sockproxy.engine import EnginePool, EngineSide
from sockproxy.errors import FramingError
from sockproxy.framing import (
    HEAD_END,
    ChunkedBody,
    Framing,
    LengthBody,
    RequestHead,
    body_scanner,
    dechunk,
    parse_request_head,
    parse_response_head,
)
from sockproxy.limits import Limits
from sockproxy.listener import Listener
from sockproxy.normalize import normalize
from sockproxy.policy import PERMISSIVE, evaluate
from sockproxy.routes import classify
from sockproxy.server import Server
from tests.protocol.test_hostile_http import POLICY, GoRefusal, go_read_request

PROPERTY = settings(max_examples=400, deadline=None)
FEW = settings(max_examples=150, deadline=None)


# -- request heads -----------------------------------------------------------------

_METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "get", "CONNECT", "G(T", "", "A" * 40]
_TARGETS = [
    "/_ping",
    "/v1.41/containers/create",
    "/v1.41/containers/json?all=1",
    "*",
    "http://docker/_ping",
    "docker:2375",
    "/a b",
    "/\x00",
    "/\xe9",
    "",
]
_VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 ", ""]
_NAMES = [
    "Host",
    "Content-Length",
    "content-length",
    "CONTENT-LENGTH",
    "Transfer-Encoding",
    "transfer-encoding",
    "Connection",
    "Expect",
    "Upgrade",
    "X-A",
    "Transfer_Encoding",
    "Content-Length ",
    " Transfer-Encoding",
    "Transfer-Encoding\x0b",
    "Tr\xe4nsfer-Encoding",
    "X@Y",
    "",
]
_VALUES = [
    "docker",
    "chunked",
    "Chunked",
    " chunked",
    "chunked ",
    "chunked,",
    ", chunked",
    "gzip, chunked",
    "chunked, gzip",
    "identity",
    "\x0bchunked",
    "\xa0chunked",
    "chunked\x85",
    "",
    "0",
    "5",
    "05",
    "+5",
    "-5",
    "0x5",
    "5, 5",
    "5 5",
    "\xd9\xa5",
    "99999999999999999999",
    "close",
    "keep-alive",
    "Upgrade",
    "\xa0close",
    "100-continue",
    "a\x00b",
    "a\rb",
    "tcp",
]
_LINE_ENDS = ["\r\n"] * 8 + ["\n", "\r", "\r\n ", "\r\n\t", "\r\r\n"]


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    """Request heads, mostly well formed, with hostile parts drawn from the corpus."""
    method = draw(st.sampled_from(_METHODS[:4]) | st.sampled_from(_METHODS))
    target = draw(st.sampled_from(_TARGETS[:3]) | st.sampled_from(_TARGETS))
    version = draw(st.sampled_from(_VERSIONS[:2]) | st.sampled_from(_VERSIONS))
    gaps = draw(st.sampled_from([(" ", " ")] * 6 + [("  ", " "), ("\t", " "), (" ", "\t")]))
    lines = [f"{method}{gaps[0]}{target}{gaps[1]}{version}"]
    if draw(st.booleans()):
        lines.append("Host: docker")
    fields = st.tuples(
        st.sampled_from(_NAMES[:10]) | st.sampled_from(_NAMES),
        st.sampled_from([": ", ":", ":\t", ":  ", " : "]),
        st.sampled_from(_VALUES) | st.text(alphabet="0123456789abcdefx,; \t", max_size=6),
    )
    for name, colon, value in draw(st.lists(fields, max_size=5)):
        lines.append(f"{name}{colon}{value}")
    ends = [draw(st.sampled_from(_LINE_ENDS)) for _ in lines]
    return ("".join(line + end for line, end in zip(lines, ends, strict=True)) + "\r\n").encode(
        "latin-1"
    )


_LENGTHS = ["5", "5", "0", "05", " 5", "5\t", "+5", "-5", "0x5", "5, 5", "5 5", "", "\xa05"]
_CODINGS = ["chunked", "chunked", "Chunked", "CHUNKED", "chunked,", ", chunked", "gzip, chunked"]
_CODINGS += ["chunked, gzip", "identity", "\xa0chunked", "chunked\x85", "", "x"]
_FIELD_VALUES = {
    "Content-Length": _LENGTHS,
    "Transfer-Encoding": _CODINGS,
    "Connection": ["close", "keep-alive", "Upgrade", "\xa0close", "keep-alive, close", ""],
    "Expect": ["100-continue", "100-Continue", "200-ok", ""],
    "Upgrade": ["tcp", "h2c"],
    "Transfer_Encoding": ["chunked"],
    "X-A": ["chunked", "5", "\xa0"],
}


@st.composite
def plausible_heads(draw: st.DrawFn) -> bytes:
    """Heads that are well formed line by line (tokens, CRLF, no controls) but whose
    framing fields are hostile: repeated, combined, oddly valued."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD"]))
    target = draw(st.sampled_from(_TARGETS[:3]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{method} {target} {version}"]
    if draw(st.integers(0, 9)):
        lines.append("Host: docker")
    framing = draw(st.sampled_from(["", "L", "T", "LT", "TL", "LL", "TT"]))
    names = [{"L": "Content-Length", "T": "Transfer-Encoding"}[c] for c in framing]
    names += draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), max_size=2))
    for name in draw(st.permutations(names)):
        colon = draw(st.sampled_from([": ", ":", ":\t"]))
        spelt = draw(st.sampled_from([name, name.lower(), name.upper()]))
        lines.append(f"{spelt}{colon}{draw(st.sampled_from(_FIELD_VALUES[name]))}")
    return ("".join(line + "\r\n" for line in lines) + "\r\n").encode("latin-1")


def _parse(raw: bytes) -> RequestHead | None:
    try:
        return parse_request_head(raw)
    except FramingError:
        return None


@PROPERTY
@given(request_heads())
def test_a_head_parses_or_is_refused_with_a_framing_error(raw: bytes) -> None:
    head = _parse(raw)  # nothing else may escape
    if head is not None:
        assert head.raw == raw
        assert head.method
        assert head.target.startswith("/")
        assert head.http_minor in (0, 1)


@PROPERTY
@given(plausible_heads() | request_heads())
def test_an_accepted_head_has_exactly_one_framing(raw: bytes) -> None:
    head = _parse(raw)
    if head is None:
        return
    lengths = [v for k, v in head.headers if k == "content-length"]
    codings = [v for k, v in head.headers if k == "transfer-encoding"]
    assert not (lengths and codings), "never both Content-Length and Transfer-Encoding"
    assert len(lengths) <= 1, "never a repeated Content-Length"
    if head.framing is Framing.CHUNKED:
        assert codings
        assert head.content_length == 0
    elif head.framing is Framing.LENGTH:
        assert int(lengths[0]) == head.content_length
        assert head.content_length > 0
    else:
        assert head.content_length == 0
    for line in raw.split(b"\r\n")[1:-2]:  # every field line: token ":" value, no controls
        name, colon, value = line.partition(b":")
        assert colon
        assert name
        assert name.strip() == name
        assert all(c == 9 or 32 <= c < 127 or c >= 128 for c in value)


_TAILS = [
    b"",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"12345GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    b"0\r\n\r\nGET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
]


def _proxy_end(head: RequestHead, tail: bytes) -> int | None:
    """Where sockproxy says the request ends in ``raw + tail`` (None: not yet)."""
    scanner = body_scanner(head.framing, head.content_length)
    try:
        used = scanner.feed(tail)
    except FramingError:
        return -1
    return len(head.raw) + used if scanner.done else None


def _go_end(stream: bytes) -> int | GoRefusal | None:
    """Where Go's server says the first request ends (None: not yet)."""
    try:
        read = go_read_request(stream, after_post=False)
    except GoRefusal as refusal:
        return refusal
    return None if read is None else read[1]


@settings(max_examples=1000, deadline=None)
@given(plausible_heads(), st.sampled_from(_TAILS))
def test_go_frames_an_accepted_head_alike_or_refuses_it(raw: bytes, tail: bytes) -> None:
    """Both engines are Go: for a head sockproxy accepts, Go's server ends the request
    where sockproxy does, or refuses it (and then closes the connection)."""
    head = _parse(raw)
    if head is None:
        event("refused by sockproxy")
        return
    go = _go_end(raw + tail)
    if isinstance(go, GoRefusal):
        event(f"accepted by sockproxy, refused by Go ({go.status})")
        return
    ours = _proxy_end(head, tail)
    if ours == -1:  # sockproxy refuses the body's framing: Go may still be reading it
        event("body framing refused by sockproxy")
        return
    event(f"compared: {head.framing.value}, {'complete' if ours else 'incomplete'}")
    assert go == ours


@pytest.mark.parametrize("connection", ["", "Connection: keep-alive\r\n"])
def test_http_1_0_transfer_encoding_is_refused(connection: str) -> None:
    """Go ignores Transfer-Encoding on HTTP/1.0 requests (net/http transfer.go, issue
    12785); RFC 9112 section 6.1 calls it faulty framing."""
    raw = f"POST /build HTTP/1.0\r\nHost: docker\r\n{connection}Transfer-Encoding: chunked\r\n\r\n"
    stream = raw.encode() + b"5\r\nhello\r\n0\r\n\r\n"
    read = go_read_request(stream, after_post=False)
    assert read is not None
    assert read[0].body == b""  # Go: no body; "5" is the next request line
    with pytest.raises(FramingError):
        parse_request_head(raw.encode())


@pytest.mark.parametrize("value", ["\xa0chunked", "chunked\x85", "\x85chunked\xa0"])
def test_transfer_coding_is_trimmed_of_optional_whitespace_only(value: str) -> None:
    """NEL and NO-BREAK SPACE are obs-text, kept by Go: not "chunked" to the engines."""
    with pytest.raises(FramingError):
        parse_request_head(
            f"POST /build HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: {value}\r\n\r\n".encode(
                "latin-1"
            )
        )


# Spellings the engines read alike: header names in any case, optional whitespace
# around values, the order of unrelated fields, the case of "chunked".
_FRAMINGS = [
    [],
    [("Content-Length", "5")],
    [("Content-Length", "0")],
    [("Transfer-Encoding", "chunked")],
    [("Content-Length", "5"), ("Content-Length", "5")],
    [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
    [("Transfer-Encoding", "gzip")],
]
_OTHERS = [
    ("Host", "docker"),
    ("Connection", "close"),
    ("Connection", "keep-alive"),
    ("Connection", "Upgrade"),
    ("Upgrade", "tcp"),
    ("X-Registry-Auth", "e30="),
    ("Content-Type", "application/json"),
]


@st.composite
def respellings(draw: st.DrawFn) -> tuple[bytes, bytes]:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    framing = draw(st.sampled_from(_FRAMINGS))
    others = draw(st.lists(st.sampled_from(_OTHERS), max_size=4, unique=True))
    fields = framing + others

    def spell(name: str, value: str) -> str:
        name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
        if value == "chunked":
            value = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED", "cHuNkEd"]))
        before = draw(st.sampled_from(["", " ", "  ", "\t", " \t"]))
        after = draw(st.sampled_from(["", " ", "\t", " \t "]))
        return f"{name}:{before}{value}{after}"

    shuffled = draw(st.permutations(others))
    first = [f"{n}: {v}" for n, v in fields]
    second = [spell(n, v) for n, v in framing + list(shuffled)]
    start = f"POST /v1.41/containers/create {version}\r\n"
    return (
        (start + "".join(f"{line}\r\n" for line in first) + "\r\n").encode(),
        (start + "".join(f"{line}\r\n" for line in second) + "\r\n").encode(),
    )


@PROPERTY
@given(respellings())
def test_spellings_the_engines_read_alike_get_one_reading(pair: tuple[bytes, bytes]) -> None:
    plain, spelt = (_parse(raw) for raw in pair)
    assert (plain is None) == (spelt is None)
    if plain is not None and spelt is not None:
        reading = ("framing", "content_length", "keep_alive", "upgrade", "method", "target")
        assert [getattr(plain, a) for a in reading] == [getattr(spelt, a) for a in reading]


# -- response heads -----------------------------------------------------------------


@st.composite
def response_heads(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from(["100", "101", "200", "204", "304", "404", "2000", "20", "x"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"]))
    reason = draw(st.sampled_from([" OK", "", " ", " Not Found"]))
    fields = draw(
        st.lists(
            st.sampled_from(
                [
                    "Content-Length: 5",
                    "Content-Length: 0",
                    "Content-Length: x",
                    "content-length: 5",
                    "Transfer-Encoding: chunked",
                    "Transfer-Encoding: gzip",
                    "Connection: close",
                    "Connection: keep-alive",
                    "Content-Type: application/json",
                ]
            ),
            max_size=4,
        )
    )
    lines = [f"{version} {status}{reason}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@PROPERTY
@given(response_heads(), st.sampled_from(["GET", "HEAD", "POST"]), st.binary(max_size=40))
def test_a_response_head_has_one_framing_or_is_an_error(
    raw: bytes, method: str, noise: bytes
) -> None:
    for candidate in (raw, noise + raw, raw[: len(raw) // 2] + noise + HEAD_END):
        try:
            response = parse_response_head(candidate, method)
        except FramingError:
            continue
        if method == "HEAD" or response.status < 200 or response.status in (204, 304):
            assert response.framing is Framing.NONE
        if response.framing is Framing.UNTIL_CLOSE:
            assert not response.keep_alive
        if response.framing is Framing.LENGTH:
            assert response.content_length > 0


# -- body scanners ------------------------------------------------------------------

_EXTENSIONS = [b"", b";a", b";a=b", b';a="x y"', b";a=b;c", b"\t;a", b" ; a = b"]
_TRAILERS = [b"", b"X-Sum: 1\r\n", b"A: b\r\nC: d\r\n"]


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, list[int]]:
    """(wire bytes, payload, where each framing line starts) of a valid chunked body."""
    payload = draw(st.binary(max_size=200))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=6)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    wire = bytearray()
    lines = []
    for piece in pieces:
        if not piece:
            continue
        digits = b"%x" % len(piece)
        digits = draw(st.sampled_from([digits, digits.upper(), b"0" + digits]))
        lines.append(len(wire))
        wire += digits + draw(st.sampled_from(_EXTENSIONS)) + b"\r\n" + piece + b"\r\n"
    lines.append(len(wire))
    wire += draw(st.sampled_from([b"0", b"000", b"0;x=y"])) + b"\r\n"
    wire += draw(st.sampled_from(_TRAILERS)) + b"\r\n"
    return bytes(wire), payload, lines


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _drive(scanner: LengthBody | ChunkedBody, pieces: list[bytes]) -> tuple[bytes, bytes]:
    """Feed pieces as ClientSide does (unused bytes wait for the next read):
    (the bytes passed on, the bytes left after the body ended)."""
    passed = bytearray()
    pending = b""
    for piece in pieces:
        pending += piece
        if scanner.done:
            continue
        used = scanner.feed(pending)
        passed += pending[:used]
        pending = pending[used:]
    return bytes(passed), pending


@PROPERTY
@given(chunked_bodies(), st.binary(max_size=30), st.lists(st.integers(0, 400), max_size=12))
def test_a_valid_chunked_body_ends_at_one_place_however_it_is_split(
    body: tuple[bytes, bytes, list[int]], after: bytes, cuts: list[int]
) -> None:
    wire, payload, _ = body
    whole = ChunkedBody()
    used = whole.feed(wire + after)
    assert whole.done
    assert used == len(wire)
    scanner = ChunkedBody()
    passed, rest = _drive(scanner, _splits(wire + after, cuts))
    assert scanner.done
    assert passed == wire
    assert rest == after
    assert dechunk(passed) == payload


@PROPERTY
@given(chunked_bodies(), st.lists(st.integers(0, 400), max_size=12), st.data())
def test_a_cut_short_chunked_body_never_ends(
    body: tuple[bytes, bytes, list[int]], cuts: list[int], data: st.DataObject
) -> None:
    wire, _, _ = body
    prefix = wire[: data.draw(st.integers(0, len(wire) - 1))]
    scanner = ChunkedBody()
    passed, _ = _drive(scanner, _splits(prefix, cuts))
    assert not scanner.done
    assert wire.startswith(passed)


_BAD_SIZE_LINES = [
    b"0x5",
    b"+5",
    b"-5",
    b" 5",
    b"5 ",
    b"5\t",
    b"5;",
    b"5;=x",
    b'5;a="x',
    b"5;a b",
    b"",
    b"g",
    b"5\x00",
    b"1_0",
    b"fffffffffffffffff",
    b"5\n",
    b"5\r",
]
_BAD_DATA_ENDS = [b"\n", b"\r", b"XX", b"\n\r", b" \r\n"]
_BAD_TRAILERS = [b"bad line", b" folded", b"X: \x00", b"X : y", b": y", b"X: y\n"]


@st.composite
def broken_chunked_bodies(draw: st.DrawFn) -> tuple[bytes, int]:
    """(wire bytes, offset of the first invalid byte) of a chunked body broken once."""
    wire, _, lines = draw(chunked_bodies())
    kind = draw(st.sampled_from(["size", "data end", "trailer"]))
    if kind == "size":
        at = draw(st.sampled_from(lines))
        end = wire.index(b"\r\n", at)
        bad = draw(st.sampled_from(_BAD_SIZE_LINES))
        return wire[:at] + bad + wire[end:], at
    if kind == "data end" and len(lines) > 1:
        at = draw(st.sampled_from(lines[1:])) - 2  # the CRLF that ends the chunk before
        return wire[:at] + draw(st.sampled_from(_BAD_DATA_ENDS)) + wire[at + 2 :], at
    last = lines[-1]
    at = wire.index(b"\r\n", last) + 2  # the trailer section
    return wire[:at] + draw(st.sampled_from(_BAD_TRAILERS)) + b"\r\n" + wire[at:], at


@PROPERTY
@given(broken_chunked_bodies(), st.lists(st.integers(0, 400), max_size=12))
def test_a_broken_chunked_body_is_refused_before_its_broken_line_passes(
    body: tuple[bytes, int], cuts: list[int]
) -> None:
    wire, broken_at = body
    scanner = ChunkedBody()
    passed = bytearray()
    pending = b""
    refused = False
    for piece in [*_splits(wire, cuts), b"\r\n0\r\n\r\n"]:
        pending += piece
        try:
            used = scanner.feed(pending)
        except FramingError:
            refused = True
            break
        passed += pending[:used]
        pending = pending[used:]
        assert not scanner.done, "a broken body never ends"
    assert refused
    assert len(passed) <= broken_at, "nothing from the broken line on was passed"


@PROPERTY
@given(
    st.integers(0, 300),
    st.binary(max_size=400),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_a_length_body_takes_exactly_its_length(length: int, data: bytes, cuts: list[int]) -> None:
    scanner = LengthBody(length)
    passed, rest = _drive(scanner, _splits(data, cuts))
    assert passed == data[:length]
    assert scanner.done == (len(data) >= length)
    if scanner.done:
        assert rest == data[length:]


@PROPERTY
@given(st.binary(max_size=300), st.data())
def test_dechunk_undoes_any_chunking(payload: bytes, data: st.DataObject) -> None:
    sizes = data.draw(st.lists(st.integers(1, 64), max_size=20))
    wire = bytearray()
    pos = 0
    for size in [*sizes, len(payload)]:
        piece = payload[pos : pos + size]
        if piece:
            ext = data.draw(st.sampled_from(_EXTENSIONS))
            wire += b"%X" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
        pos += len(piece)
    wire += b"0\r\n" + data.draw(st.sampled_from(_TRAILERS)) + b"\r\n"
    assert ChunkedBody().feed(bytes(wire)) == len(wire)
    assert dechunk(bytes(wire)) == payload


# -- classify ---------------------------------------------------------------------

_SEGMENTS = st.sampled_from(
    ["", ".", "..", "v1.41", "v4.0.0", "libpod", "containers", "json", "create", "exec",
     "start", "attach", "images", "%2F", "%2e", "%00", "%zz", "a%2Fb", "\\", "\u00e9", "~x"]
)  # fmt: skip
_QUERIES = st.sampled_from(["", "?all=1", "?fromImage=x", "?fromSrc=-", "?a;b", "?%zz"])


@PROPERTY
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "get", "CONNECT", ""]),
    st.lists(_SEGMENTS, max_size=6).map("/".join),
    _QUERIES,
)
def test_classify_never_raises_and_an_unplaced_request_is_refused(
    method: str, path: str, query: str
) -> None:
    route = classify(method, "/" + path + query)
    if route.known:
        assert route.reason == ""
        return
    assert route.operation == "unknown"
    assert route.reason
    assert (route.hijack, route.body, route.params) == (False, "", ())
    request = normalize(route.operation, route.section, route.body, route.query, None)
    for policy in (PERMISSIVE, POLICY):  # default deny, even where everything is allowed
        assert not evaluate(policy, request).allowed


_PARAMETRISED = [
    ("GET", "/v1.41/containers/{}/json"),
    ("POST", "/v1.41/containers/{}/start"),
    ("POST", "/containers/{}/attach"),
    ("POST", "/v1.41/exec/{}/start"),
    ("DELETE", "/v1.41/volumes/{}"),
    ("GET", "/v1.41/images/{}/json"),
    ("GET", "/v4.0.0/libpod/containers/{}/json"),
    ("POST", "/v4.0.0/libpod/exec/{}/start"),
    ("GET", "/v1.41/networks/{}"),
]
_NAME = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)


def _encode_one_letter(text: str, index: int, upper: bool) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    at = letters[index % len(letters)]
    escape = f"%{ord(text[at]):02X}" if upper else f"%{ord(text[at]):02x}"
    return text[:at] + escape + text[at + 1 :]


@PROPERTY
@given(st.sampled_from(_PARAMETRISED), _NAME, st.integers(0, 100), st.booleans())
def test_percent_encoding_a_letter_of_a_parameter_keeps_the_operation(
    template: tuple[str, str], name: str, index: int, upper: bool
) -> None:
    """Both engines decode path parameters: an escaped letter names the same object."""
    assume(any(c.isalpha() for c in name))
    method, path = template
    route = classify(method, path.format(name))
    assume(route.known)
    spelt = classify(method, path.format(_encode_one_letter(name, index, upper)))
    assert (spelt.operation, spelt.params) == (route.operation, route.params)


_KNOWN_TARGETS = [
    ("GET", "/v1.41/containers/json?all=1"),
    ("POST", "/v1.41/containers/create"),
    ("GET", "/v1.41/containers/abc/json"),
    ("POST", "/v1.41/containers/abc/attach?stream=1"),
    ("POST", "/v1.41/exec/abc/start"),
    ("POST", "/v1.41/images/create?fromImage=busybox"),
    ("GET", "/v1.41/images/busybox/json"),
    ("POST", "/v1.41/build"),
    ("GET", "/_ping"),
    ("GET", "/v4.0.0/libpod/containers/json"),
    ("POST", "/v4.0.0/libpod/containers/create"),
    ("GET", "/v1.41/volumes"),
]


@PROPERTY
@given(st.sampled_from(_KNOWN_TARGETS), st.integers(0, 100), st.booleans())
def test_percent_encoding_any_letter_never_yields_another_operation(
    target: tuple[str, str], index: int, upper: bool
) -> None:
    """An escaped letter in a fixed segment is routed by moby (which decodes) and not by
    Podman (which routes the escaped path): the same operation, or a refusal."""
    method, full = target
    path, mark, query = full.partition("?")
    route = classify(method, full)
    assert route.known
    spelt = classify(method, _encode_one_letter(path, index, upper) + mark + query)
    assert spelt.operation in (route.operation, "unknown")
    if spelt.known:
        assert spelt.params == route.params


@PROPERTY
@given(st.sampled_from(_KNOWN_TARGETS), st.integers(0, 100))
def test_the_case_of_an_escape_does_not_matter(target: tuple[str, str], index: int) -> None:
    method, full = target
    path, mark, query = full.partition("?")
    lower = classify(method, _encode_one_letter(path, index, False) + mark + query)
    upper = classify(method, _encode_one_letter(path, index, True) + mark + query)
    assert (lower.operation, lower.params) == (upper.operation, upper.params)


@FEW
@given(st.sampled_from(_KNOWN_TARGETS))
def test_escaping_a_whole_known_path_is_refused_or_kept(target: tuple[str, str]) -> None:
    method, full = target
    path, mark, query = full.partition("?")
    escaped = "/".join(quote(seg, safe="") for seg in path.split("/"))
    spelt = classify(method, escaped + mark + query)
    assert spelt.operation in (classify(method, full).operation, "unknown")


# -- fuzz: the real ClientSide against an in-memory engine -----------------------------

SEED = 20251123
ITERATIONS = 3000
FUZZ_LIMITS = Limits(head_timeout=0.2, idle_timeout=0.5, body_bytes=64 * 1024)


class _Transport(asyncio.Transport):
    """An in-memory transport: what a protocol writes, and its closing, as asyncio does."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.eof_written = False
        self.paused = False
        self.closing = False
        self.lost = asyncio.get_running_loop().create_future()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof_written, "write after write_eof"
        if not self.closing:
            self.written += data

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self._lose)

    def abort(self) -> None:
        self.close()

    def _lose(self) -> None:
        self.protocol.connection_lost(None)
        self.lost.set_result(None)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Engine:
    """What the fake engine read: request heads (strictly parsed) and violations."""

    def __init__(self) -> None:
        self.heads: list[RequestHead] = []
        self.violations: list[str] = []


class _EngineTransport(_Transport):
    """The engine end of one connection: parses what the proxy sends, answers each."""

    def __init__(self, protocol: EngineSide, engine: _Engine) -> None:
        super().__init__(protocol)
        self.engine = engine
        self.buf = b""
        self.scanner: LengthBody | ChunkedBody | None = None
        self.method = ""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        self.buf += bytes(data)
        while self.buf:
            if self.scanner is None:
                end = self.buf.find(HEAD_END)
                if end < 0:
                    return
                raw, self.buf = self.buf[: end + 4], self.buf[end + 4 :]
                try:
                    head = parse_request_head(raw)
                except FramingError as exc:
                    self.engine.violations.append(f"engine read an invalid head {raw!r}: {exc}")
                    self.close()
                    return
                if not classify(head.method, head.target).known:
                    self.engine.violations.append(f"engine read an unplaced request {raw!r}")
                self.engine.heads.append(head)
                self.method = head.method
                scanner = body_scanner(head.framing, head.content_length)
                self.scanner = cast(LengthBody | ChunkedBody, scanner)
            try:
                used = self.scanner.feed(self.buf)
            except FramingError as exc:
                self.engine.violations.append(f"engine read an invalid body: {exc}")
                self.close()
                return
            self.buf = self.buf[used:]
            if not self.scanner.done:
                return
            self.scanner = None
            asyncio.get_running_loop().call_soon(self._answer, self.method == "HEAD")

    def _answer(self, head: bool) -> None:
        if not self.closing:
            protocol = cast(EngineSide, self.protocol)
            body = b"" if head else b"{}"
            protocol.data_received(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )


class _MemoryPool(EnginePool):
    def __init__(self, engine: _Engine) -> None:
        super().__init__("/nonexistent/engine.sock")
        self.engine = engine

    async def connect(self) -> EngineSide:
        side = EngineSide(self)
        side.connection_made(_EngineTransport(side, self.engine))
        return side


_FUZZ_SEEDS = [
    b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n",
    b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
    b'Content-Type: application/json\r\nContent-Length: 19\r\n\r\n{"Image":"busybox"}',
    b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 52\r\n\r\n"
    b'{"Image":"busybox","HostConfig":{"Privileged":true}}',
    b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n"
    b'\r\n9\r\n{"Image":\r\na;x=y\r\n"busybox"}\r\n0\r\n\r\n',
    b"PUT /v1.41/containers/abc/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n"
    b"Content-Length: 5\r\n\r\n12345",
    b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
    b"POST /v1.41/exec/abc/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
    b"Upgrade: tcp\r\nContent-Length: 2\r\n\r\n{}early stdin",
    b"GET /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nExpect: 100-continue\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /v1.41/no/such HTTP/1.1\r\nHost: docker\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /v1.41/build HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 3\r\n\r\na=b",
]
_FUZZ_TOKENS = [
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\x0b",
    b"\x7f",
    b"\x85",
    b"\xa0",
    b":",
    b";",
    b",",
    b"0",
    b"5",
    b"x",
    b"-",
    b"+",
    b"%",
    b"%2F",
    b"/..",
    b"chunked",
    b"HTTP/1.1",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
]


def fuzz_streams(rng: random.Random, count: int) -> Iterator[list[bytes]]:
    """Mutated request streams, each cut into the reads the proxy gets."""
    for _ in range(count):
        if rng.random() < 0.1:
            data = rng.randbytes(rng.randrange(0, 300))
        else:
            data = bytearray(rng.choice(_FUZZ_SEEDS))
            for _ in range(rng.randrange(0, 3)):
                data += rng.choice(_FUZZ_SEEDS)  # pipelined
            for _ in range(rng.randrange(0, 5)):
                at = rng.randrange(0, len(data) + 1)
                op = rng.randrange(5)
                if op == 0:
                    data[at:at] = rng.choice(_FUZZ_TOKENS)
                elif op == 1:
                    del data[at : at + rng.randrange(1, 8)]
                elif op == 2:
                    data[at:at] = data[at : at + rng.randrange(1, 40)]
                elif op == 3 and at < len(data):
                    data[at] = rng.randrange(256)
                else:
                    del data[rng.randrange(at, len(data) + 1) :]
            data = bytes(data)
        if rng.random() < 0.05:
            yield [data[i : i + 1] for i in range(len(data))]
        else:
            cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 6)))
            yield _splits(bytes(data), cuts)


def _well_formed_answers(data: bytes) -> int:
    """What the client read is a sequence of whole responses; how many."""
    count, pos = 0, 0
    while pos < len(data):
        end = data.find(HEAD_END, pos)
        assert end >= 0, f"a partial response: {data[pos:]!r}"
        response = parse_response_head(data[pos : end + 4], "GET")
        pos = end + 4 + response.content_length
        assert response.framing in (Framing.NONE, Framing.LENGTH)
        assert pos <= len(data)
        count += 1
    return count


async def _run_stream(pieces: list[bytes], errors: list[str]) -> tuple[bool, _Engine]:
    """One client connection carrying ``pieces``, then the client's half-close; whether it
    ended on a timer (the head timeout) rather than at once."""
    engine = _Engine()
    server = Server([], _MemoryPool(engine), POLICY, FUZZ_LIMITS)
    # A Unix listener in name only: the fuzzed client has no peer credentials.
    unbound = socket.socket(socket.AF_UNIX)
    unbound.close()
    client = ClientSide(server, Listener("/fuzz.sock", unbound, 0, name="fuzz"))
    transport = _Transport(client)
    client.connection_made(transport)
    try:
        for piece in pieces:
            async with asyncio.timeout(2.0):  # a pause that is never resumed is a hang
                while transport.paused and not transport.closing:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
            if transport.closing:
                break
            client.data_received(piece)
            await asyncio.sleep(0)
        if not transport.closing and not client.eof_received():
            transport.close()
        started = time.monotonic()
        async with asyncio.timeout(2.0):  # no hang
            await transport.lost
        timed = time.monotonic() - started >= FUZZ_LIMITS.head_timeout * 0.9
        _well_formed_answers(bytes(transport.written))
    except BaseException as exc:
        errors.append(f"{type(exc).__name__}: {exc} for {pieces!r}")
        raise
    finally:
        await server.engine_client.close()
    return timed, engine


async def test_fuzzed_streams_through_the_client_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few thousand mutated streams through the real ClientSide: nothing escapes, every
    connection ends, the client reads whole responses only, and the engine reads only
    heads the strict parser accepts, for endpoints the classifier placed."""
    internal: list[str] = []

    class _Log:
        def __getattr__(self, level: str) -> Callable[..., None]:
            def log(event: str, **fields: object) -> None:
                if level in ("error", "exception", "critical"):
                    internal.append(f"{event} {fields}")

            return log

    monkeypatch.setattr(server_module, "log", _Log())
    loop = asyncio.get_running_loop()
    handler_errors: list[str] = []
    loop.set_exception_handler(lambda _, context: handler_errors.append(str(context)))
    rng = random.Random(SEED)
    errors: list[str] = []
    timed = forwarded = 0
    streams = list(fuzz_streams(rng, ITERATIONS))
    for batch in range(0, len(streams), 100):
        results = await asyncio.gather(
            *(_run_stream(pieces, errors) for pieces in streams[batch : batch + 100]),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise AssertionError(errors[0] if errors else repr(result)) from result
            ended_on_timer, engine = result
            timed += ended_on_timer
            forwarded += len(engine.heads)
            assert not engine.violations, engine.violations
    assert not internal, internal
    assert not handler_errors, handler_errors
    print(
        f"fuzz: {len(streams)} streams (seed {SEED}), {forwarded} requests reached the "
        f"engine, {timed} connections ended on the head timeout"
    )
