"""Audit: one event per request, naming the caller as the kernel reports it,
never carrying bodies or credentials."""

from __future__ import annotations

import asyncio
import grp
import io
import json
import os
import pwd
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sockproxy import audit
from sockproxy import exchange as exchange_module
from sockproxy.policy import load_policy
from tests.protocol.conftest import Client, FakeEngine, start_proxy

REPO = Path(__file__).resolve().parents[2]

Connect = Callable[[], Awaitable[Client]]
SECRET = "eyJ1c2VybmFtZSI6InMzY3IzdCJ9"
OUR_PROCESS_NAME = Path(f"/proc/{os.getpid()}/comm").read_text().strip()


async def test_each_request_is_audited_with_peer_credentials_and_no_secrets(
    engine: FakeEngine, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(exchange_module.audit, "record", lambda **event: events.append(event))
    client = await connect()
    body = b'{"Image": "busybox", "Env": ["TOKEN=' + SECRET.encode() + b'"]}'
    client.writer.write(
        b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"X-Registry-Auth: %s\r\nX-Registry-Config: %s\r\nAuthorization: Basic %s\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (SECRET.encode(), SECRET.encode(), SECRET.encode(), len(body), body)
    )
    await client.response()
    client.writer.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    await client.response()
    assert [e["operation"] for e in events] == ["container.create", "system.ping"]
    create = events[0]
    who = create["identity"]
    assert (who["uid"], who["gid"], who["pid"]) == (os.getuid(), os.getgid(), os.getpid())
    assert who["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert who["process"] == OUR_PROCESS_NAME
    assert grp.getgrgid(os.getgid()).gr_name in who["groups"]
    assert who["listener"].endswith(".sock")
    assert create["allowed"] is True
    assert create["path"] == "/containers/create"  # no query string
    assert create["policy"] == "builtin-permissive"
    assert SECRET not in repr(events)


async def test_refusals_are_warnings_with_rule_and_reason_in_the_written_line(
    engine: FakeEngine, sockdir: Path
) -> None:
    """The rendered JSON line of a refusal: level warning, the rule, the reason, the
    identity; never the body or the credential headers."""
    stream = io.StringIO()
    audit.configure("json", "info", stream)
    try:
        policy = load_policy(str(REPO / "policies" / "default.yaml"))
        server = await start_proxy(sockdir / "p.sock", engine.path, policy)
        try:
            reader, writer = await asyncio.open_unix_connection(server.listeners[0].path)
            body = b'{"Image": "x", "HostConfig": {"Privileged": true}, "Env": ["T=%s"]}' % (
                SECRET.encode()
            )
            writer.write(
                b"POST /v1.41/containers/create HTTP/1.1\r\nX-Registry-Auth: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (SECRET.encode(), len(body), body)
            )
            await reader.readuntil(b"\r\n\r\n")
            writer.close()
        finally:
            await server.shutdown(grace=1.0)
        audit.flush()
    finally:
        audit.configure("json", "info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if '"request"' in line]
    assert len(lines) == 1
    event = lines[0]
    assert event["level"] == "warning"
    assert event["decision"] == "deny"
    assert event["rule"] == "no-privileged"
    assert "privileged" in event["reason"]
    assert event["uid"] == os.getuid()
    assert event["listener"].endswith(".sock")
    assert SECRET not in stream.getvalue()
