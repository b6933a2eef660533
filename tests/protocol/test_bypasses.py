"""Red-team requests over the whole HTTP path, with ``policies/default.yaml``:
what the policy refuses must never reach the (fake) engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sockproxy.policy import load_policy
from tests.protocol.conftest import FakeEngine, read_request, start_proxy

POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"

# A Podman-safe build (nsoptions asks for a private network) whose real
# parameters travel in a form-encoded body: moby's postBuild calls ParseForm,
# and r.FormValue prefers the body's values to the query's, so the build runs
# with the host's network and a context fetched from "remote".
FORM = b"networkmode=host&remote=http%3A%2F%2Fexample.com%2Fctx.tar"


@pytest.fixture
async def guarded(sockdir: Path, engine: FakeEngine) -> AsyncIterator[str]:
    """A proxy socket enforcing the default policy in front of the fake engine."""
    server = await start_proxy(sockdir / "guard.sock", engine.path, load_policy(str(POLICY)))
    yield server.listeners[0].path
    await server.shutdown(grace=1.0)


async def exchange(path: str, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        head, body = await read_request(reader)
        return head + body
    finally:
        writer.close()


def post(target: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: docker", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_privileged_create_never_reaches_the_engine(guarded: str, engine: FakeEngine) -> None:
    body = b'{"Image":"busybox","HostConfig":{"Privileged":true}}'
    answer = await exchange(
        guarded, post("/v1.41/containers/create", body, "Content-Type: application/json")
    )
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"rule no-privileged" in answer
    assert engine.heads == []


async def test_chunked_privileged_create_never_reaches_the_engine(
    guarded: str, engine: FakeEngine
) -> None:
    """The body split across chunks, with a chunk extension, is read whole first."""
    request = (
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b'10;x=y\r\n{"HostConfig":{"\r\n'
        b'12\r\nPrivileged":true}}\r\n'
        b"0\r\n\r\n"
    )
    answer = await exchange(guarded, request)
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"rule no-privileged" in answer
    assert engine.heads == []


@pytest.mark.parametrize(
    "content_type",
    [
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: Application/X-WWW-Form-Urlencoded; charset=utf-8",
    ],
)
async def test_form_encoded_build_parameters_are_refused(
    guarded: str, engine: FakeEngine, content_type: str
) -> None:
    """moby's build handler reads a form body before the query (r.Form)."""
    answer = await exchange(guarded, post("/v1.41/build?nsoptions=%5B%5D", FORM, content_type))
    assert answer.startswith(b"HTTP/1.1 400")
    assert engine.heads == []
