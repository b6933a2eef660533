"""Audit: one event per request, naming the caller as the kernel reports it,
never carrying bodies or credentials."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sockproxy import exchange as exchange_module
from tests.protocol.conftest import Client, FakeEngine

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
        b"X-Registry-Auth: %s\r\nContent-Length: %d\r\n\r\n%s" % (SECRET.encode(), len(body), body)
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
