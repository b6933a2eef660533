"""The metrics endpoint: GET /metrics over TCP and a unix socket, nothing else,
and no client (junk, stalled, half-closed, too many) stops it answering the next.

Runs on asyncio's loop and on uvloop (tests/protocol/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog.testing

from sockproxy import metrics as metrics_module
from sockproxy.listener import ListenError
from sockproxy.metrics import CONTENT_TYPE, Metrics, MetricsServer, serve_metrics
from sockproxy.routes import ENDPOINTS
from tests.unit.test_metrics import parse_exposition

GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"


@pytest.fixture
def metrics() -> Metrics:
    metrics = Metrics()
    metrics.request_done(
        listener="local",
        operation="container.create",
        decision="deny",
        rule="no-privileged",
        status=None,
        engine_seconds=None,
    )
    return metrics


@pytest.fixture(params=["tcp", "unix"])
async def endpoint(
    request: pytest.FixtureRequest, metrics: Metrics, sockdir: Path
) -> AsyncIterator[MetricsServer]:
    address = "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix://{sockdir}/metrics.sock"
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    server = await serve_metrics(metrics, address)
    yield server
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0)  # let transports run their close callbacks
    loop.set_exception_handler(None)
    assert unhandled == [], "the event loop saw an exception nobody handled"


async def connect(server: MetricsServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, where = server.address.partition("://")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    host, _, port = where.rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port))


async def exchange(server: MetricsServer, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data``, read until the endpoint closes; everything it answered."""
    reader, writer = await connect(server)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        await writer.drain()
        return await asyncio.wait_for(read_all(reader), 5)
    finally:
        writer.close()
        await _closed(writer)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF, or until the endpoint resets the connection."""
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def _closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):  # the endpoint reset a connection it gave up on
        await writer.wait_closed()


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


async def test_get_metrics_answers_200_with_the_exposition(endpoint: MetricsServer) -> None:
    status, headers, body = split(await exchange(endpoint, GET))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    families = parse_exposition(body)
    assert families["sockproxy_refusals_total"].value(rule="no-privileged") == 1


async def test_each_scrape_shows_the_counts_of_that_moment(
    endpoint: MetricsServer, metrics: Metrics
) -> None:
    metrics.reload_done("failed")
    first = parse_exposition(split(await exchange(endpoint, GET))[2])
    metrics.reload_done("ok")
    second = parse_exposition(split(await exchange(endpoint, GET))[2])
    assert first["sockproxy_reloads_total"].value(outcome="ok") == 0
    assert second["sockproxy_reloads_total"].value(outcome="ok") == 1


async def test_a_large_exposition_arrives_whole(endpoint: MetricsServer, metrics: Metrics) -> None:
    """Every operation on several listeners (~270 KB): the close waits for the flush."""
    operations = sorted({endpoint.operation for endpoint in ENDPOINTS})
    for operation in operations:
        for listener in ("local", "ci", "ci/nested"):
            metrics.request_done(
                listener=listener,
                operation=operation,
                decision="allow",
                rule=None,
                status=200,
                engine_seconds=0.01,
            )
    status, headers, body = split(await exchange(endpoint, GET))
    assert status == "HTTP/1.1 200 OK"
    assert len(body) == int(headers["content-length"]) > 200_000
    latency = parse_exposition(body)["sockproxy_engine_latency_seconds"]
    count = "sockproxy_engine_latency_seconds_count"
    assert [latency.value(count, operation=op) for op in operations] == [3] * len(operations)


async def test_a_query_string_is_ignored(endpoint: MetricsServer) -> None:
    status, _, _ = split(await exchange(endpoint, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"


async def test_head_answers_the_headers_of_get_without_a_body(endpoint: MetricsServer) -> None:
    status, headers, body = split(await exchange(endpoint, b"HEAD /metrics HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert int(headers["content-length"]) > 0
    assert body == b""


@pytest.mark.parametrize("path", [b"/", b"/metrics/", b"/Metrics", b"/favicon.ico", b"*"])
async def test_another_path_is_404(endpoint: MetricsServer, path: bytes) -> None:
    status, _, _ = split(await exchange(endpoint, b"GET " + path + b" HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.1 404 Not Found"


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"])
async def test_another_method_is_405_naming_get_and_head(
    endpoint: MetricsServer, method: bytes
) -> None:
    status, headers, _ = split(await exchange(endpoint, method + b" /metrics HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello's start
    ],
)
async def test_junk_is_answered_400_and_the_next_scrape_succeeds(
    endpoint: MetricsServer, junk: bytes
) -> None:
    status, _, _ = split(await exchange(endpoint, junk))
    assert status == "HTTP/1.1 400 Bad Request"
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


async def test_a_head_larger_than_the_limit_is_answered_400(endpoint: MetricsServer) -> None:
    big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (metrics_module.HEAD_LIMIT + 100) + b"\r\n\r\n"
    status, _, _ = split(await exchange(endpoint, big))
    assert status == "HTTP/1.1 400 Bad Request"
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


@pytest.mark.parametrize("partial", [b"", b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"])
async def test_a_client_that_closes_before_its_head_ends_gets_nothing(
    endpoint: MetricsServer, partial: bytes
) -> None:
    assert await exchange(endpoint, partial, half_close=True) == b""
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


async def test_a_client_that_half_closes_after_its_request_is_answered(
    endpoint: MetricsServer,
) -> None:
    status, _, _ = split(await exchange(endpoint, GET, half_close=True))
    assert status == "HTTP/1.1 200 OK"


async def test_a_client_that_resets_mid_head_does_not_disturb_the_endpoint(
    endpoint: MetricsServer,
) -> None:
    _reader, writer = await connect(endpoint)
    writer.write(b"GET /met")
    await writer.drain()
    sock = writer.get_extra_info("socket")
    if sock.family != socket.AF_UNIX:  # SO_LINGER 0: close sends RST
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()
    await asyncio.sleep(0.05)
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


async def test_a_silent_client_is_dropped_after_the_read_timeout(
    endpoint: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "READ_TIMEOUT", 0.2)
    reader, writer = await connect(endpoint)
    try:
        # Others are served while it stalls.
        assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"
        assert await asyncio.wait_for(read_all(reader), 3) == b""
    finally:
        writer.close()
        await _closed(writer)


async def test_clients_beyond_the_limit_are_closed_unanswered_until_others_leave(
    endpoint: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "MAX_CLIENTS", 2)
    stalled = [await connect(endpoint) for _ in range(2)]
    await asyncio.sleep(0.05)  # both accepted and waiting for a head
    try:
        assert await exchange(endpoint, GET) == b""
    finally:
        for _reader, writer in stalled:
            writer.close()
            await _closed(writer)
    await asyncio.sleep(0.05)
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


async def test_many_scrapes_at_once_are_all_answered(endpoint: MetricsServer) -> None:
    answers = await asyncio.gather(*(exchange(endpoint, GET) for _ in range(20)))
    assert {split(answer)[0] for answer in answers} == {"HTTP/1.1 200 OK"}


async def test_tcp_reports_the_port_it_bound(metrics: Metrics) -> None:
    server = await serve_metrics(metrics, "tcp://127.0.0.1:0")
    try:
        host, _, port = server.address.removeprefix("tcp://").rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
    finally:
        server.close()
        await server.wait_closed()


async def test_an_ipv6_address_is_reported_in_brackets(metrics: Metrics) -> None:
    server = await serve_metrics(metrics, "tcp://[::1]:0")
    try:
        assert server.address.startswith("tcp://[::1]:")
        assert split(await exchange(server, GET))[0] == "HTTP/1.1 200 OK"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failing_render_is_logged_and_the_endpoint_keeps_serving(
    endpoint: MetricsServer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bytes:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch, structlog.testing.capture_logs() as logs:
        patch.setattr(metrics, "render", broken)
        assert await exchange(endpoint, GET) == b""
    assert [entry["event"] for entry in logs] == ["metrics endpoint: internal error"]
    assert split(await exchange(endpoint, GET))[0] == "HTTP/1.1 200 OK"


async def test_the_unix_socket_is_0660_and_removed_on_close(
    metrics: Metrics, sockdir: Path
) -> None:
    path = sockdir / "metrics.sock"
    server = await serve_metrics(metrics, f"unix://{path}")
    assert server.address == f"unix://{path}"
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    server.close()
    await server.wait_closed()
    assert not path.exists()


async def test_close_drops_a_client_in_progress(metrics: Metrics) -> None:
    server = await serve_metrics(metrics, "tcp://127.0.0.1:0")
    reader, writer = await connect(server)
    await asyncio.sleep(0.05)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 3)
    try:
        assert await asyncio.wait_for(read_all(reader), 3) == b""
    finally:
        writer.close()
        await _closed(writer)


async def test_a_unix_path_a_live_server_holds_is_refused(metrics: Metrics, sockdir: Path) -> None:
    address = f"unix://{sockdir}/metrics.sock"
    server = await serve_metrics(metrics, address)
    try:
        with pytest.raises(ListenError, match="already listening"):
            await serve_metrics(metrics, address)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_bad_address_is_refused_before_listening(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="give tcp://HOST:PORT or unix:///PATH"):
        await serve_metrics(metrics, "http://127.0.0.1:9102")
