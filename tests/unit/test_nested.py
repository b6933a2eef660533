"""Guarded nested sockets: which binds ask for the engine, how the body is
rewritten, and the sockets sockproxy opens for them."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from sockproxy import nested
from sockproxy.checks import Context
from sockproxy.identity import Identity
from sockproxy.listener import Listener, remove_listener
from sockproxy.model import Request
from sockproxy.normalize import normalize
from sockproxy.routes import classify

NESTED = "/run/sockproxy/nested/abc.sock"


def _request(body: dict[str, Any], target: str = "/v1.41/containers/create") -> Request:
    route = classify("POST", target)
    return normalize(
        route.operation, route.section, route.body, route.query, json.dumps(body).encode()
    )


def _binds(*binds: str) -> Request:
    return _request({"Image": "x", "HostConfig": {"Binds": list(binds)}})


@pytest.mark.parametrize(
    ("bind", "asks"),
    [
        ("/var/run/docker.sock:/var/run/docker.sock", True),
        ("/run/docker.sock:/d.sock:ro", True),
        ("/run/podman/podman.sock:/run/docker.sock", True),
        ("/run/user/1000/podman/podman.sock:/s", True),
        ("/var/run/../run/docker.sock:/s", True),  # cleaned as the engine cleans it
        ("/var/run:/r", False),  # a directory holding sockets: the checks decide (and refuse)
        ("/srv/data:/data", False),
        ("named:/data", False),
    ],
)
def test_binds_of_the_engine_socket_ask_for_a_nested_one(bind: str, asks: bool) -> None:
    request = _binds(bind)
    assert bool(nested.engine_socket_binds(request, Context())) is asks


def test_own_listener_paths_count_only_when_they_are_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "proxy.sock")
    context = Context(own_sockets=(path,))
    assert not nested.engine_socket_binds(_binds(f"{path}:/s"), context)  # nothing there yet
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        assert nested.engine_socket_binds(_binds(f"{path}:/s"), context)


def test_the_decision_sees_the_request_without_the_rewritten_binds() -> None:
    request = _binds("/var/run/docker.sock:/var/run/docker.sock", "/srv/a:/a")
    guarded = nested.engine_socket_binds(request, Context())
    decided = nested.without(request, guarded)
    assert [m.source for m in decided.containers[0].mounts] == ["/srv/a"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"HostConfig": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock:ro", "/srv:/s"]}},
            {"HostConfig": {"Binds": [f"{NESTED}:/var/run/docker.sock:ro", "/srv:/s"]}},
        ),
        (
            {"hostconfig": {"binds": ["/run/docker.sock:/d"]}},  # the client's spelling is kept
            {"hostconfig": {"binds": [f"{NESTED}:/d"]}},
        ),
        (
            {
                "HostConfig": {
                    "Mounts": [{"Type": "bind", "Source": "/run/docker.sock", "Target": "/d"}]
                }
            },
            {"HostConfig": {"Mounts": [{"Type": "bind", "Source": NESTED, "Target": "/d"}]}},
        ),
    ],
)
def test_docker_bodies_are_rewritten_where_the_bind_was(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = _request({"Image": "x", **body})
    guarded = nested.engine_socket_binds(request, Context())
    rewritten = nested.rewrite(json.dumps({"Image": "x", **body}).encode(), guarded, NESTED)
    assert json.loads(rewritten) == {"Image": "x", **expected}


def test_libpod_mounts_are_rewritten() -> None:
    body = {
        "image": "x",
        "mounts": [{"type": "bind", "source": "/run/podman/podman.sock", "destination": "/s"}],
    }
    request = _request(body, "/v4.0.0/libpod/containers/create")
    guarded = nested.engine_socket_binds(request, Context())
    assert guarded
    rewritten = json.loads(nested.rewrite(json.dumps(body).encode(), guarded, NESTED))
    assert rewritten["mounts"][0]["source"] == NESTED


def test_a_bind_sockproxy_cannot_place_is_refused_not_guessed() -> None:
    request = _binds("/var/run/docker.sock:/s")
    (mount,) = nested.engine_socket_binds(request, Context())
    moved = type(mount)(**{**{f: getattr(mount, f) for f in mount.__slots__}, "origin": "Odd[0]"})
    with pytest.raises(nested.CannotRewrite):
        nested.rewrite(b'{"Odd": ["/var/run/docker.sock:/s"]}', (moved,), NESTED)


def test_one_nested_socket_per_client_and_policy(tmp_path: Path) -> None:
    served: list[Listener] = []
    sockets = nested.NestedSockets(str(tmp_path / "nested"), served.append)
    alice = Identity("local", uid=1001, user="alice")
    bob = Identity("local", uid=1002, user="bob")
    try:
        path = sockets.socket_for(alice, "tenant")
        assert sockets.socket_for(alice, "tenant") == path
        assert sockets.socket_for(bob, "tenant") != path
        assert sockets.socket_for(alice, "stricter") != path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666  # for non-root processes in containers
        assert stat.S_IMODE(os.stat(tmp_path / "nested").st_mode) == 0o700  # nobody else gets in
        assert sockets.issued(path)
        assert not sockets.issued(str(tmp_path / "nested" / "other.sock"))
        assert len(served) == 3
        assert served[0].fixed is not None
        assert served[0].fixed.identity == alice
        assert served[0].fixed.policy == "tenant"
    finally:
        for listener in served:
            remove_listener(listener)
