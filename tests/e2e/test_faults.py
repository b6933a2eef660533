"""Faults around the proxy, with real engines: the engine goes away and comes back, dies in
the middle of a stream, a client vanishes mid-stream, the proxy is stopped with a stream open.

The engine restart and engine death tests stop an engine: each starts its own private engine
(scripts/engines.py) in a directory it owns, never the session engine other tests use.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import (
    Proxy,
    _current_proxies,
    _remove_dir,
    _start_proxy,
    running_proxy,
    short_tmpdir,
)
from .dockercli import (
    IMAGE,
    REPO,
    Containers,
    DockerCLI,
    UnixHTTPConnection,
    describe,
    drain_engine_pool,
    engines,
    error_message,
    open_fds,
    record_figures,
    steady_fds,
    unique,
    wait_until,
)

pytestmark = pytest.mark.e2e

# What a request gets while the engine is down: nobody listens on its socket (or the socket
# file is gone), or the engine closed a connection before answering.
UNREACHABLE_PREFIXES = (
    "sockproxy: cannot reach the engine at ",
    "sockproxy: the engine closed the connection without answering",
    "sockproxy: the engine closed the stream early",
)
# Prints forever; ends on SIGTERM (as PID 1 it would ignore it without the trap), so the
# engine's teardown does not wait for a SIGKILL.
TICKER = "trap 'exit 0' TERM; while :; do echo tick; sleep 0.1; done"
STREAM_END_TIMEOUT = 10.0  # a client stream must end this soon after the engine dies
DEFAULT_POLICY = str(REPO / "policies" / "default.yaml")


def assert_unreachable(status: int, body: bytes, engine_socket: str) -> None:
    """A 502 whose JSON message says the engine cannot be reached (naming its socket)."""
    message = error_message(body)
    assert status == 502, f"expected 502 while the engine is down, got {status}: {message}"
    assert message.startswith(UNREACHABLE_PREFIXES), message
    if message.startswith(UNREACHABLE_PREFIXES[0]):
        assert message.startswith(f"{UNREACHABLE_PREFIXES[0]}{engine_socket}: "), message


@contextlib.contextmanager
def proxy_in_front(
    eng: engines.Engine, tmp_path_factory: pytest.TempPathFactory, *args: str
) -> Iterator[Proxy]:
    """A proxy of this test's own in front of `eng`; stopped with SIGTERM on exit, which
    must end it with status 0 (conftest's running_proxy)."""
    with contextlib.contextmanager(running_proxy)(eng, tmp_path_factory, args) as proxy:
        if proxy.proc is None:
            pytest.skip("SOCKPROXY_E2E_DIRECT=1: these tests need the proxy process")
        yield proxy


@dataclass
class PrivateEngine:
    """An engine of this test's own kind in a directory the test owns, so it can be stopped,
    killed and started again on the same socket path."""

    kind: str
    workdir: str
    started: list[engines.Engine] = field(default_factory=list)

    @property
    def current(self) -> engines.Engine:
        return self.started[-1]

    def start(self) -> engines.Engine:
        try:
            eng = engines.start_engine(self.kind, self.workdir)
        except engines.EngineError as exc:
            pytest.fail(f"cannot start a private {self.kind}: {exc}")
        self.started.append(eng)
        return eng

    def stop_all(self) -> None:
        for eng in reversed(self.started):
            eng.stop()


@pytest.fixture
def private_engine(kind: str) -> Iterator[PrivateEngine]:
    """A private engine (same kind as the session engine) with the busybox image."""
    holder = PrivateEngine(kind, short_tmpdir("spf-"))
    try:
        engines.import_busybox(holder.start())
        yield holder
    finally:
        holder.stop_all()
        shutil.rmtree(holder.workdir, ignore_errors=True)


def test_engine_restart_answers_502_then_service_resumes_without_restarting_the_proxy(
    private_engine: PrivateEngine,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """While the engine is stopped every request gets a prompt 502 naming the engine socket;
    once an engine answers on the same socket again, requests through the same proxy process
    (even on a client connection opened before the outage) succeed. The proxy enforces the
    default policy, so its start re-check's own engine connections go through the outage too."""
    eng = private_engine.current
    with proxy_in_front(eng, tmp_path_factory, "--policy", DEFAULT_POLICY) as proxy:
        assert proxy.proc is not None
        docker = DockerCLI(proxy.socket, str(tmp_path / "config"))
        kept = UnixHTTPConnection(proxy.socket, timeout=30)  # kept alive across the outage
        try:
            assert kept.call("GET", "/_ping")[0] == 200
            assert docker.ok("run", "--rm", IMAGE, "echo", "before") == "before\n"

            eng.stop()  # SIGTERM to its PID; waits until it exited
            assert not engines._pid_alive(eng.pid)
            for path in ("/_ping", "/version", "/containers/json?all=1"):
                started = time.monotonic()
                status, body = engines.api_request(proxy.socket, "GET", path, timeout=10)
                assert_unreachable(status, body, eng.socket)
                assert time.monotonic() - started < 2.0, "a 502 must not wait for the engine"
            assert_unreachable(*kept.call("GET", "/_ping"), eng.socket)
            # A request whose body the proxy read (to inspect it) before finding no engine:
            # the kept connection stays in step for the next request.
            create = {"Image": IMAGE, "Cmd": ["true"]}
            assert_unreachable(*kept.call("POST", "/v1.41/containers/create", create), eng.socket)
            # A start: the policy re-checks it on the engine's answer, which can't come.
            start = "/v1.41/containers/some-container/start"
            status, body = kept.call("POST", start)
            assert_unreachable(status, body, eng.socket)
            start_message = error_message(body)
            assert_unreachable(*kept.call("GET", "/v1.41/version"), eng.socket)
            res = docker("ps")
            assert res.returncode != 0, describe(res)
            assert f"cannot reach the engine at {eng.socket}" in res.stderr, describe(res)
            assert proxy.proc.poll() is None, "sockproxy exited while the engine was down"

            restarted = private_engine.start()  # same directory: same socket path
            ready = time.monotonic()  # it has just answered GET /_ping on its own socket
            assert restarted.socket == eng.socket
            assert restarted.pid != eng.pid
            attempts = 0
            while True:
                attempts += 1
                status, body = engines.api_request(proxy.socket, "GET", "/_ping", timeout=10)
                if status == 200:
                    recovered = time.monotonic()
                    break
                assert_unreachable(status, body, eng.socket)
                assert time.monotonic() - ready < 10, "no 200 through the proxy 10 s after restart"
                time.sleep(0.005)

            assert kept.call("GET", "/_ping") == (200, b"OK")
            out = docker.ok("run", "--rm", IMAGE, "echo", "back")
            assert out == "back\n"
            assert proxy.proc.poll() is None
        finally:
            kept.close()
    record_figures(
        tmp_path_factory.getbasetemp(),
        f"engine-restart-{private_engine.kind}",
        {
            "recovery_ms": round((recovered - ready) * 1000, 1),
            "attempts": attempts,
            "socket": eng.socket,
            "start_502_message": start_message,
        },
    )


def test_engine_killed_mid_stream_ends_client_streams_and_the_proxy_stays_up(
    private_engine: PrivateEngine,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """SIGKILL to the engine while `docker logs -f`, `docker events` and a `docker exec`
    (hijacked) stream through the proxy: the clients end within seconds, a new request gets
    502, the proxy keeps running."""
    eng = private_engine.current
    with proxy_in_front(eng, tmp_path_factory) as proxy:
        assert proxy.proc is not None
        docker = DockerCLI(proxy.socket, str(tmp_path / "config"))
        name = unique("ticker")
        events = docker.popen("events")
        logs = execd = None
        try:
            docker.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", TICKER)
            events.wait_for(lambda line: " start " in line and name in line, timeout=30)
            logs = docker.popen("logs", "-f", name)
            logs.wait_for(lambda line: line == "tick", timeout=30)
            # A hijacked stream too: exec's output over the upgraded connection.
            execd = docker.popen("exec", name, "sh", "-c", "while :; do echo out; sleep 0.1; done")
            execd.wait_for(lambda line: line == "out", timeout=30)

            os.kill(eng.pid, signal.SIGKILL)
            killed = time.monotonic()
            status, body = engines.api_request(proxy.socket, "GET", "/containers/json", timeout=10)
            assert_unreachable(status, body, eng.socket)
            for stream in (logs, events, execd):
                stream.wait(timeout=STREAM_END_TIMEOUT)
            ended_s = time.monotonic() - killed
            assert proxy.proc.poll() is None, "sockproxy exited when the engine died"
            assert_unreachable(
                *engines.api_request(proxy.socket, "GET", "/_ping", timeout=10), eng.socket
            )
        finally:
            for stream in (events, logs, execd):
                if stream is not None:
                    stream.close()
    codes = {s.command.split()[1]: s.proc.returncode for s in (events, logs, execd) if s}
    print(f"\n{private_engine.kind}: streams ended {ended_s:.2f}s after SIGKILL, exits {codes}")


def test_client_vanishing_mid_stream_closes_the_engine_connection(
    engine: engines.Engine,
    direct_docker: DockerCLI,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """A `docker logs -f` killed with SIGKILL, a raw `logs?follow=1` client that resets its
    connection and a raw `events` client that closes it: the proxy's descriptors return to
    their baseline (its engine connections for those streams are closed, not leaked)."""
    direct = Containers(direct_docker)
    with proxy_in_front(engine, tmp_path_factory) as proxy:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        docker = DockerCLI(proxy.socket, str(tmp_path / "config"))
        # Set up on the engine directly: the proxy's engine pool stays empty.
        name = direct.run_detached(IMAGE, "sh", "-c", TICKER, prefix="vanish")
        try:
            drain_engine_pool(proxy.socket)
            baseline = steady_fds(pid)
            cli = docker.popen("logs", "-f", name)
            raw: list[socket.socket] = []
            try:
                cli.wait_for(lambda line: line == "tick", timeout=30)
                for target in (f"/containers/{name}/logs?follow=1&stdout=1", "/events"):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(30)
                    sock.connect(proxy.socket)
                    raw.append(sock)
                    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
                # The follow stream is flowing (a head and the first ticks). The events
                # stream's head may wait for a first event; what counts is the connection.
                assert raw[0].recv(65536).startswith(b"HTTP/1.1 200 "), "logs?follow=1"
                # Three clients, each with its own engine connection: at least six more.
                wait_until(
                    lambda: open_fds(pid) >= baseline + 6,
                    timeout=10,
                    what=f"three streams' descriptors in sockproxy (baseline {baseline})",
                )
                during = open_fds(pid)

                cli.proc.kill()  # SIGKILL: the kernel closes its sockets
                # One raw client resets its connection (a crash with unread data does), the
                # other just closes it: only the proxy's own bookkeeping frees the engine
                # side then, not the engine noticing a half-close.
                raw[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                for sock in raw:
                    sock.close()
                raw.clear()
                cli.wait(timeout=10)
            finally:
                cli.close()
                for sock in raw:
                    sock.close()

            # The CLI's finished requests (inspect, /_ping) left kept-alive engine
            # connections in the proxy's pool: those are legitimate; drain them.
            time.sleep(0.5)
            drain_engine_pool(proxy.socket)
            wait_until(
                lambda: open_fds(pid) <= baseline,
                timeout=10,
                what=f"sockproxy's descriptors back to {baseline} (now {open_fds(pid)})",
            )
            after = open_fds(pid)
        finally:
            direct.remove_all()
    print(f"\n{engine.kind}: proxy fds baseline {baseline}, streaming {during}, after {after}")


def test_sigterm_with_a_stream_open_exits_0_within_the_grace_and_ends_the_stream(
    engine: engines.Engine,
    direct_docker: DockerCLI,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """`docker events` streams through a proxy started with --grace 2; SIGTERM: the socket
    file goes at once, the proxy gives the stream its grace, then exits 0 and the stream ends."""
    grace = 2.0
    proxy = _start_proxy(
        engine, tmp_path_factory.mktemp(f"proxy-sigterm-{engine.kind}"), ["--grace", str(grace)]
    )
    assert proxy.proc is not None
    _current_proxies.append(proxy)
    events = DockerCLI(proxy.socket, str(tmp_path / "config")).popen("events")
    volumes: list[str] = []
    try:
        # Events show only once the stream is open: make one until it arrives.
        deadline = time.monotonic() + 30
        while True:
            volumes.append(unique("sigterm"))
            direct_docker.ok("volume", "create", volumes[-1])
            try:
                _, line = events.lines.get(timeout=1.0)
            except queue.Empty:
                assert time.monotonic() < deadline, f"no event through the proxy: {events.stderr}"
                continue
            assert line is not None, f"`docker events` ended early: {events.stderr}"
            break

        proxy.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        wait_until(lambda: not os.path.exists(proxy.socket), 2, "the listening socket removed")
        try:
            code = proxy.proc.wait(timeout=grace + 2)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sockproxy still running {grace + 2}s after SIGTERM\n{proxy.log_tail()}")
        exited = time.monotonic() - sent
        assert code == 0, f"sockproxy exited {code} on SIGTERM\n{proxy.log_tail()}"
        assert not os.path.exists(proxy.socket), "sockproxy left its socket behind"
        # The stream was in flight: it had the grace period, then was closed.
        assert exited >= grace - 0.5, f"exited after {exited:.2f}s, before the grace period"
        events.wait(timeout=3)
    finally:
        events.close()
        _current_proxies.remove(proxy)
        if proxy.proc.poll() is None:
            proxy.proc.kill()
            proxy.proc.wait()
        _remove_dir(proxy.workdir)
        if volumes:
            direct_docker("volume", "rm", "-f", *volumes)
    print(f"\n{engine.kind}: SIGTERM, stream open: exit 0 after {exited:.2f}s, grace {grace}s")
