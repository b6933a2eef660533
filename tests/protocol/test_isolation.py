"""Ownership isolation over the whole HTTP path: a client's lookups of what
it doesn't own end at sockproxy's 404; the fake engine sees only the lookup."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from sockproxy.fence import OWNER_LABEL
from sockproxy.policy import PERMISSIVE
from tests.protocol.conftest import FakeEngine, read_request, response, start_proxy

ME = f"uid:{os.getuid()}"  # the proxy's client is this process
FULL = "f" * 64
OBJECTS: dict[str, object] = {
    "/v1.41/containers/mine/json": {"Id": FULL, "Config": {"Labels": {OWNER_LABEL: ME}}},
    "/v1.41/containers/theirs/json": {"Id": "e" * 64, "Config": {"Labels": {OWNER_LABEL: "x"}}},
}


async def _engine_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Inspects answer from OBJECTS (404 otherwise); everything else "[]"."""
    while True:
        try:
            head, _ = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        method, target = head.split(b" ", 2)[:2]
        path = urlsplit(target.decode()).path
        if method == b"GET" and path.endswith("/json") and "/containers/json" not in path:
            found = OBJECTS.get(path)
            if found is None:
                writer.write(response(b'{"message":"no such container"}', "404 Not Found"))
            else:
                writer.write(response(json.dumps(found).encode()))
        else:
            writer.write(response(b"[]"))
        await writer.drain()


@pytest.fixture
async def isolated(sockdir: Path, engine: FakeEngine) -> AsyncIterator[str]:
    """A proxy whose policy isolates clients, in front of the answering fake engine."""
    engine.handler = _engine_answers
    policy = dataclasses.replace(PERMISSIVE, isolation=True)
    server = await start_proxy(sockdir / "iso.sock", engine.path, policy)
    yield server.listeners[0].path
    await server.shutdown(grace=1.0)


async def _ask(path: str, method: str, target: str, body: bytes | None = None) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: docker"]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        head, answer = await read_request(reader)
        return head + answer
    finally:
        writer.close()


def _targets(engine: FakeEngine) -> list[str]:
    return [head.split(b" ", 2)[0].decode() + " " + head.split(b" ", 2)[1].decode()
            for head in engine.heads]  # fmt: skip


@pytest.mark.parametrize(
    "target",
    ["/v1.41/containers/theirs/json", "/v1.41/containers/nowhere/json"],
)
async def test_someone_elses_container_is_missing_and_only_looked_up(
    isolated: str, engine: FakeEngine, target: str
) -> None:
    answer = await _ask(isolated, "GET", target)
    name = target.split("/")[3]
    assert answer.startswith(b"HTTP/1.1 404")
    assert f"No such container: {name}".encode() in answer
    assert _targets(engine) == [f"GET /v1.41/containers/{name}/json"]  # the lookup, nothing else


async def test_an_own_container_is_reached_by_its_full_id(
    isolated: str, engine: FakeEngine
) -> None:
    answer = await _ask(isolated, "POST", "/v1.40/containers/mine/stop?t=0")
    assert answer.startswith(b"HTTP/1.1 200")
    assert _targets(engine) == [
        "GET /v1.41/containers/mine/json",
        f"POST /v1.40/containers/{FULL}/stop?t=0",
    ]


async def test_a_listing_reaches_the_engine_with_the_owner_label_filter(
    isolated: str, engine: FakeEngine
) -> None:
    answer = await _ask(isolated, "GET", "/v1.41/containers/json?all=1")
    assert answer.startswith(b"HTTP/1.1 200")
    (sent,) = _targets(engine)
    query = dict(parse_qsl(urlsplit(sent.split(" ", 1)[1]).query))
    assert query["all"] == "1"
    assert json.loads(query["filters"]) == {"label": [f"{OWNER_LABEL}={ME}"]}


async def test_a_create_joining_someone_elses_container_is_refused_after_the_lookup(
    isolated: str, engine: FakeEngine
) -> None:
    body = b'{"Image":"x","HostConfig":{"NetworkMode":"container:theirs"}}'
    answer = await _ask(isolated, "POST", "/v1.41/containers/create", body)
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"No such container: theirs (rule isolation)" in answer
    assert _targets(engine) == ["GET /v1.41/containers/theirs/json"]


async def test_events_with_a_label_filter_never_reach_the_engine(
    isolated: str, engine: FakeEngine
) -> None:
    filters = quote(json.dumps({"label": ["a=b"]}), safe="")
    answer = await _ask(isolated, "GET", f"/v1.41/events?filters={filters}")
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"rule isolation" in answer
    assert engine.heads == []
