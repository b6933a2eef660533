"""Soak: 64 concurrent clients through one policy-enforcing proxy in front of a real engine.

Small requests on kept-alive connections, container lifecycles, bounded streams (events
with since/until, logs?follow=1 of short-lived containers) and requests the policy refuses,
all at once. Every response must be the expected one; refused requests must never reach
the engine; the proxy's descriptors must come back to their baseline and its memory must
not grow much. Bounded in count and time (SOAK_BUDGET seconds per engine at most).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import running_proxy
from .dockercli import (
    IMAGE,
    REPO,
    UnixHTTPConnection,
    drain_engine_pool,
    engines,
    error_message,
    open_fds,
    record_figures,
    rss_kib,
    steady_fds,
    unique,
)

pytestmark = pytest.mark.e2e

SOAK_BUDGET = 60.0  # seconds per engine: no new work is started after this
CLIENTS = {"small": 36, "refused": 12, "lifecycle": 8, "stream": 8}  # 64 threads
SMALL_ROUNDS = 200  # each: /_ping and /containers/json (some clients also /version once)
REFUSALS = 100  # per refused-requests client
LIFECYCLES = 4  # per lifecycle client
STREAMS = 4  # per stream client, events and followed logs in turns
RSS_GROWTH_LIMIT_KIB = 20 * 1024
FD_TOLERANCE = 2
FD_SETTLE = 40.0  # seconds for idle engine connections to be closed after the run
POOL_MAX_IDLE = 64  # sockproxy's EnginePool.max_idle: draining takes more requests than that
API = "/v1.41"
PRIVILEGED_RULE = "(rule no-privileged"


@dataclass
class Soak:
    """What the clients share: where to send, what they saw, until when."""

    socket: str
    kind: str
    prefix: str
    since: int
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: list[str] = field(default_factory=list)
    cut: bool = False

    def call(
        self,
        conn: UnixHTTPConnection,
        kind: str,
        method: str,
        path: str,
        body: object = None,
        expect: int = 200,
    ) -> bytes:
        """One request; an unexpected status is recorded (and raised, ending that client)."""
        sent = 0 if body is None else len(json.dumps(body))
        status, data = conn.call(method, path, body)
        with self.lock:
            self.requests[kind] += 1
            self.bytes_sent += sent
            self.bytes_received += len(data)
        if status != expect:
            raise Unexpected(f"{method} {path}: {status}, expected {expect}: {error_message(data)}")
        return data

    def over(self) -> bool:
        """Past the budget: clients start no new work (and the run is marked as cut)."""
        if time.monotonic() > self.deadline:
            self.cut = True
        return self.cut


class Unexpected(Exception):
    """A response other than the expected one."""


def small_client(soak: Soak, index: int) -> None:
    """Kept-alive small requests: /_ping, /containers/json, and /version once in every
    fourth client (Podman 4.3 takes about 0.3 s to answer /version)."""
    conn = UnixHTTPConnection(soak.socket, timeout=30)
    with contextlib.closing(conn):
        if index % 4 == 0:
            info = json.loads(soak.call(conn, "small", "GET", f"{API}/version"))
            if "ApiVersion" not in info:
                raise Unexpected(f"/version without ApiVersion: {info}")
        for _ in range(SMALL_ROUNDS):
            if soak.over():
                return
            if soak.call(conn, "small", "GET", "/_ping") != b"OK":
                raise Unexpected("/_ping did not answer OK")
            listed = json.loads(soak.call(conn, "small", "GET", f"{API}/containers/json"))
            if not isinstance(listed, list):
                raise Unexpected(f"/containers/json is not a list: {listed!r}")


def privileged_create(kind: str, name: str, variant: int) -> tuple[str, dict[str, object]]:
    """A privileged container create (path, body), in one of the spellings an engine reads."""
    variants: list[tuple[str, dict[str, object]]] = [
        (
            f"{API}/containers/create?name={name}",
            {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Privileged": True}},
        ),
        # The engines read JSON field names case-insensitively.
        (
            f"{API}/containers/create?name={name}",
            {"image": IMAGE, "cmd": ["true"], "hostconfig": {"privileged": True}},
        ),
    ]
    if kind == "podman":
        variants.append(
            (
                "/v4.0.0/libpod/containers/create",
                {"name": name, "image": IMAGE, "command": ["true"], "privileged": True},
            )
        )
    return variants[variant % len(variants)]


def refused_client(soak: Soak, index: int) -> None:
    """Privileged creates on a kept-alive connection: each a 403 naming the rule."""
    conn = UnixHTTPConnection(soak.socket, timeout=30)
    with contextlib.closing(conn):
        for n in range(REFUSALS):
            if soak.over():
                return
            path, body = privileged_create(soak.kind, f"{soak.prefix}-refused-{index}-{n}", n)
            data = soak.call(conn, "refused", "POST", path, body, expect=403)
            if PRIVILEGED_RULE not in error_message(data):
                raise Unexpected(f"403 without the rule id: {error_message(data)}")


def run_container(soak: Soak, conn: UnixHTTPConnection, name: str, script: str) -> str:
    """Create and start a container (allowed by the policy); return its id."""
    created = soak.call(
        conn,
        "lifecycle",
        "POST",
        f"{API}/containers/create?name={name}",
        {"Image": IMAGE, "Cmd": ["sh", "-c", script]},
        expect=201,
    )
    cid = str(json.loads(created)["Id"])
    soak.call(conn, "lifecycle", "POST", f"{API}/containers/{cid}/start", expect=204)
    return cid


def finish_container(soak: Soak, conn: UnixHTTPConnection, cid: str, marker: bytes) -> None:
    """Wait for the container, check its logs hold `marker`, remove it."""
    waited = json.loads(soak.call(conn, "lifecycle", "POST", f"{API}/containers/{cid}/wait"))
    if waited.get("StatusCode") != 0:
        raise Unexpected(f"container {cid} exited {waited}")
    logs = soak.call(conn, "lifecycle", "GET", f"{API}/containers/{cid}/logs?stdout=1&stderr=1")
    if marker not in logs:
        raise Unexpected(f"logs of {cid} lack {marker!r}: {logs[-200:]!r}")
    soak.call(conn, "lifecycle", "DELETE", f"{API}/containers/{cid}", expect=204)


def lifecycle_client(soak: Soak, index: int) -> None:
    """create, start, wait, logs, rm: a handful (the engines are slow at these)."""
    conn = UnixHTTPConnection(soak.socket, timeout=60)
    with contextlib.closing(conn):
        for n in range(LIFECYCLES):
            if soak.over():
                return
            name = f"{soak.prefix}-life-{index}-{n}"
            cid = run_container(soak, conn, name, f"echo {name}")
            finish_container(soak, conn, cid, name.encode())


def stream_client(soak: Soak, index: int) -> None:
    """Streams that end by themselves, in turns: events between since and until, and the
    followed logs of a container that prints ten lines and exits."""
    conn = UnixHTTPConnection(soak.socket, timeout=60)
    with contextlib.closing(conn):
        for n in range(STREAMS):
            if soak.over():
                return
            if (index + n) % 2 == 0:
                until = int(time.time()) + 2
                query = urllib.parse.urlencode({"since": soak.since, "until": until})
                data = soak.call(conn, "stream", "GET", f"{API}/events?{query}")
                for line in data.splitlines():
                    if not isinstance(json.loads(line), dict):
                        raise Unexpected(f"events: not a JSON object: {line[:200]!r}")
                continue
            name = f"{soak.prefix}-follow-{index}-{n}"
            cid = run_container(
                soak, conn, name, "for i in $(seq 1 10); do echo line-$i; sleep 0.1; done"
            )
            followed = soak.call(
                conn, "stream", "GET", f"{API}/containers/{cid}/logs?follow=1&stdout=1"
            )
            if b"line-10\n" not in followed:
                raise Unexpected(f"followed logs of {name} end early: {followed[-200:]!r}")
            finish_container(soak, conn, cid, b"line-1\n")


CLIENT_KINDS: dict[str, Callable[[Soak, int], None]] = {
    "small": small_client,
    "refused": refused_client,
    "lifecycle": lifecycle_client,
    "stream": stream_client,
}


def run_clients(soak: Soak) -> float:
    """All clients at once (released together by a barrier); returns the run's seconds."""
    total = sum(CLIENTS.values())
    barrier = threading.Barrier(total + 1)

    def client(kind: str, index: int) -> None:
        try:
            barrier.wait(timeout=30)
            CLIENT_KINDS[kind](soak, index)
        except Exception as exc:
            with soak.lock:
                detail = traceback.format_exception_only(exc)[-1].strip()
                soak.errors.append(f"{kind} client {index}: {detail}")

    threads = [
        threading.Thread(target=client, args=(kind, i), name=f"soak-{kind}-{i}", daemon=True)
        for kind, count in CLIENTS.items()
        for i in range(count)
    ]
    for t in threads:
        t.start()
    barrier.wait(timeout=30)
    started = time.monotonic()
    for t in threads:
        t.join(timeout=max(1.0, soak.deadline + 60 - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"clients still running {SOAK_BUDGET + 60:.0f}s after the start: {hung}"
    return time.monotonic() - started


def engine_container_names(engine_socket: str) -> list[str]:
    """Every container name the engine knows, asked on its own socket."""
    status, body = engines.api_request(engine_socket, "GET", "/containers/json?all=1")
    assert status == 200, body[:500]
    return [n.lstrip("/") for ctr in json.loads(body) for n in ctr.get("Names") or []]


def audit_totals(log: str) -> Counter[str]:
    """Requests, statuses and bytes in both directions, from the proxy's audit lines."""
    totals: Counter[str] = Counter()
    for line in Path(log).read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "request":
                totals["requests"] += 1
                totals[f"status {event.get('status')}"] += 1
                totals["bytes_in"] += int(event.get("bytes_in") or 0)
                totals["bytes_out"] += int(event.get("bytes_out") or 0)
            elif isinstance(event, dict) and event.get("level") == "error":
                totals["error lines"] += 1
    return totals


def test_soak_64_concurrent_clients_keep_every_answer_right_and_no_resource_leaks(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """64 concurrent clients mixing small requests, container lifecycles, streams and refused
    requests: no unexpected answer, nothing refused reaches the engine, the proxy's fds return
    to the baseline once its idle engine connections are closed, and its RSS grows by less
    than 20 MiB."""
    policy = str(REPO / "policies" / "default.yaml")
    prefix = unique("soak")
    proxy_ctx = contextlib.contextmanager(running_proxy)
    leftovers: list[str] = []
    try:
        with proxy_ctx(engine, tmp_path_factory, ("--policy", policy)) as proxy:
            if proxy.proc is None:
                pytest.skip("SOCKPROXY_E2E_DIRECT=1: the soak measures the proxy process")
            pid = proxy.proc.pid
            drain_engine_pool(proxy.socket)
            fds_before, rss_before = steady_fds(pid), rss_kib(pid)

            soak = Soak(
                proxy.socket,
                engine.kind,
                prefix,
                since=int(time.time()) - 1,
                deadline=time.monotonic() + SOAK_BUDGET,
            )
            seconds = run_clients(soak)

            fds_pooled, rss_after_run = steady_fds(pid), rss_kib(pid)
            # Idle kept-alive engine connections are the pool's, not leaks: drain them.
            drain_engine_pool(proxy.socket, POOL_MAX_IDLE + 8)
            fds_drained = steady_fds(pid)
            # The start re-check's lookups (GET /containers/{id}/json) keep connections of
            # their own, in aiohttp's pool: closed after 15 s idle, checked every 15 s.
            drained_at = time.monotonic()
            while open_fds(pid) > fds_before and time.monotonic() - drained_at < FD_SETTLE:
                time.sleep(0.2)
            settle_s = time.monotonic() - drained_at
            fds_after, rss_after = steady_fds(pid), rss_kib(pid)
        # The proxy is stopped (exit 0, asserted by running_proxy): its audit log is complete.
        audit = audit_totals(proxy.log)
        names = engine_container_names(engine.socket)
    finally:
        with contextlib.suppress(Exception):  # never hide why the test failed
            leftovers = [n for n in engine_container_names(engine.socket) if n.startswith(prefix)]
            for n in leftovers:
                engines.api_request(engine.socket, "DELETE", f"/containers/{n}?force=1")

    total = sum(soak.requests.values())
    figures = {
        "clients": sum(CLIENTS.values()),
        "seconds": round(seconds, 2),
        "requests": dict(soak.requests),
        "requests_total": total,
        "requests_per_s": round(total / seconds, 1),
        "client_bytes_sent": soak.bytes_sent,
        "client_bytes_received": soak.bytes_received,
        "proxy_audit": dict(audit),
        "errors": len(soak.errors),
        "cut_by_budget": soak.cut,
        "rss_kib_before": rss_before,
        "rss_kib_after_run": rss_after_run,
        "rss_kib_after_settle": rss_after,
        "fds_before": fds_before,
        "fds_after_with_idle_pool": fds_pooled,
        "fds_after_pool_drained": fds_drained,
        "fds_after_settle": fds_after,
        "fds_settle_s": round(settle_s, 1),
    }
    record_figures(tmp_path_factory.getbasetemp(), f"soak-{engine.kind}", figures)

    assert not soak.errors, f"{len(soak.errors)} unexpected answers:\n" + "\n".join(
        soak.errors[:30]
    )
    refused = [n for n in names if n.startswith(f"{prefix}-refused-")]
    assert not refused, f"refused creates reached the engine: {refused}"
    assert not leftovers, f"containers the soak should have removed: {leftovers}"
    assert soak.requests["refused"] > 0
    assert audit["status 403"] == soak.requests["refused"], audit
    # Every client request is in the audit log (plus the fixture's and the drains' pings).
    assert audit["requests"] >= total, (audit, total)
    assert not audit["error lines"], f"sockproxy logged errors:\n{proxy.log_tail()}"
    assert fds_after <= fds_before + FD_TOLERANCE, (
        f"sockproxy holds {fds_after} descriptors after the soak, {fds_before} before"
    )
    grown = max(rss_after_run, rss_after) - rss_before
    assert grown < RSS_GROWTH_LIMIT_KIB, (
        f"sockproxy's RSS grew by {grown} KiB (from {rss_before} KiB): {figures}"
    )
