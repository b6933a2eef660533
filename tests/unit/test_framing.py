"""Frame stage: one reading of every request head, or a refusal."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockproxy.errors import FramingError
from sockproxy.framing import (
    Framing,
    check_trailer_line,
    parse_chunk_size,
    parse_request_head,
    parse_response_head,
)


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_simple_get_is_parsed_with_raw_bytes_kept() -> None:
    raw = head("GET /v1.41/containers/json?all=1 HTTP/1.1", "Host: docker", "X-Registry-Auth: e30=")
    req = parse_request_head(raw)
    assert (req.method, req.target, req.http_minor) == ("GET", "/v1.41/containers/json?all=1", 1)
    assert req.framing is Framing.NONE
    assert req.keep_alive
    assert not req.upgrade
    assert req.header("x-registry-auth") == "e30="
    assert req.raw == raw


@pytest.mark.parametrize(
    ("lines", "framing", "length"),
    [
        (["Content-Length: 12"], Framing.LENGTH, 12),
        (["Content-Length: 0"], Framing.NONE, 0),
        (["Transfer-Encoding: chunked"], Framing.CHUNKED, 0),
        (["Transfer-Encoding: Chunked"], Framing.CHUNKED, 0),
    ],
)
def test_body_framing_is_derived_from_headers(
    lines: list[str], framing: Framing, length: int
) -> None:
    req = parse_request_head(head("POST /build HTTP/1.1", "Host: x", *lines))
    assert (req.framing, req.content_length) == (framing, length)


def test_upgrade_needs_both_connection_and_upgrade_headers() -> None:
    both = parse_request_head(
        head("POST /exec/x/start HTTP/1.1", "Connection: Upgrade", "Upgrade: tcp")
    )
    only_header = parse_request_head(head("POST /exec/x/start HTTP/1.1", "Upgrade: tcp"))
    assert both.upgrade
    assert not only_header.upgrade


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
    ],
)
def test_keep_alive_follows_version_and_connection(
    version: str, connection: str | None, keep_alive: bool
) -> None:
    lines = [f"GET /_ping {version}"] + ([f"Connection: {connection}"] if connection else [])
    assert parse_request_head(head(*lines)).keep_alive is keep_alive


SMUGGLING = {
    "length and chunked": head(
        "POST / HTTP/1.1", "Content-Length: 5", "Transfer-Encoding: chunked"
    ),
    "repeated length": head("POST / HTTP/1.1", "Content-Length: 5", "Content-Length: 5"),
    "length list": head("POST / HTTP/1.1", "Content-Length: 5, 5"),
    "signed length": head("POST / HTTP/1.1", "Content-Length: +5"),
    "hex length": head("POST / HTTP/1.1", "Content-Length: 0x5"),
    "empty length": head("POST / HTTP/1.1", "Content-Length: "),
    "gzip coding": head("POST / HTTP/1.1", "Transfer-Encoding: gzip"),
    "chunked not last": head("POST / HTTP/1.1", "Transfer-Encoding: chunked, gzip"),
    "chunked twice": head(
        "POST / HTTP/1.1", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"
    ),
    "identity coding": head("POST / HTTP/1.1", "Transfer-Encoding: identity"),
    "obs-fold": head("GET / HTTP/1.1", "X-A: 1", " folded"),
    "space before colon": head("POST / HTTP/1.1", "Content-Length : 5"),
    "tab before colon": head("POST / HTTP/1.1", "Transfer-Encoding\t: chunked"),
    "bare LF": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: x\ry: z\r\n\r\n",
    "NUL in value": head("GET / HTTP/1.1", "X-A: a\x00b"),
    "no colon": head("GET / HTTP/1.1", "Host"),
    "absolute form": head("GET http://engine/_ping HTTP/1.1"),
    "authority form": head("CONNECT engine:80 HTTP/1.1"),
    "asterisk form": head("OPTIONS * HTTP/1.1"),
    "HTTP/2 line": head("GET / HTTP/2.0"),
    "HTTP/0.9 line": head("GET /"),
    "double space": head("GET  / HTTP/1.1"),
    "lowercase version": head("GET / http/1.1"),
    "invalid method": head("G(T / HTTP/1.1"),
    "space in target": head("GET /a b HTTP/1.1"),
}


@pytest.mark.parametrize("raw", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_ambiguous_framing_is_refused(raw: bytes) -> None:
    with pytest.raises(FramingError):
        parse_request_head(raw)


@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_raise_framing_error(data: bytes) -> None:
    with contextlib.suppress(FramingError):
        parse_request_head(data + b"\r\n\r\n")


@given(
    st.lists(
        st.sampled_from(
            ["Content-Length: 3", "Transfer-Encoding: chunked", "Connection: close", "X-A: b"]
        ),
        max_size=4,
    )
)
def test_a_request_has_at_most_one_framing(lines: list[str]) -> None:
    try:
        req = parse_request_head(head("POST / HTTP/1.1", *lines))
    except FramingError:
        return
    assert not (req.framing is Framing.CHUNKED and any("Length" in ln for ln in lines))


@pytest.mark.parametrize(
    ("method", "status", "lines", "framing"),
    [
        ("GET", 200, ["Content-Length: 2"], Framing.LENGTH),
        ("GET", 200, ["Transfer-Encoding: chunked"], Framing.CHUNKED),
        ("GET", 200, [], Framing.UNTIL_CLOSE),
        ("GET", 204, [], Framing.NONE),
        ("GET", 304, ["Content-Length: 10"], Framing.NONE),
        ("HEAD", 200, ["Content-Length: 10"], Framing.NONE),
        ("POST", 101, ["Upgrade: tcp", "Connection: Upgrade"], Framing.NONE),
        ("GET", 200, ["Content-Length: 0"], Framing.NONE),
    ],
)
def test_response_framing(method: str, status: int, lines: list[str], framing: Framing) -> None:
    resp = parse_response_head(head(f"HTTP/1.1 {status} X", *lines), method)
    assert resp.framing is framing


def test_response_read_until_close_is_not_kept_alive() -> None:
    assert not parse_response_head(head("HTTP/1.1 200 OK"), "GET").keep_alive


def test_malformed_status_line_is_an_error() -> None:
    with pytest.raises(FramingError):
        parse_response_head(head("HTTP/1.1 2000 OK"), "GET")


@pytest.mark.parametrize(
    ("line", "size"),
    [(b"0\r\n", 0), (b"1a\r\n", 26), (b"FF;name=value\r\n", 255), (b'4 ; x="q"\r\n', 4)],
)
def test_chunk_size_lines(line: bytes, size: int) -> None:
    assert parse_chunk_size(line) == size


@pytest.mark.parametrize(
    "line",
    [
        b"\r\n",
        b"0x10\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b" 1\r\n",
        b"1\n",
        b"g\r\n",
        b"10000000000000000\r\n",
        b"1;\r\n",
        b'1;a="unterminated\r\n',
    ],
)
def test_invalid_chunk_size_lines_are_refused(line: bytes) -> None:
    with pytest.raises(FramingError):
        parse_chunk_size(line)


def test_trailer_lines_are_header_fields() -> None:
    check_trailer_line(b"X-Checksum: abc\r\n")
    check_trailer_line(b"\r\n")
    with pytest.raises(FramingError):
        check_trailer_line(b"bad line\r\n")
