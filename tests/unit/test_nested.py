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


@pytest.mark.parametrize(
    "source",
    [
        "/run/user/4242/podman/podman.sock",  # nobody's there: asked for all the same
        "/var/run/user/4242/podman/podman.sock",
        "/run/user/4242/docker.sock",
        "/var/run/podman/podman.sock",
        "//var//run/./docker.sock",
    ],
)
def test_conventional_engine_socket_paths_count_whether_or_not_they_exist(source: str) -> None:
    assert nested.engine_socket_binds(_binds(f"{source}:/s"), Context())


@pytest.mark.parametrize(
    "mount",
    [
        {"Type": "volume", "Source": "docker.sock", "Target": "/s"},  # a named volume
        {"Type": "tmpfs", "Target": "/var/run"},
        {
            "Type": "bind",
            "Source": "/run/containerd/containerd.sock",
            "Target": "/s",
        },  # not Docker's API
    ],
)
def test_other_mounts_do_not_ask_for_the_engine(mount: dict[str, Any]) -> None:
    request = _request({"Image": "x", "HostConfig": {"Mounts": [mount]}})
    assert not nested.engine_socket_binds(request, Context())


def test_a_symlink_to_the_engine_socket_asks_for_it(tmp_path: Path) -> None:
    link = tmp_path / "engine"
    link.symlink_to("/var/run/docker.sock")  # whether or not it exists here
    assert nested.engine_socket_binds(_binds(f"{link}:/s"), Context())


def test_own_sockets_count_only_as_the_socket_files_themselves(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sock"
    regular = tmp_path / "upstream.sock"
    regular.write_text("not a socket")
    context = Context(own_sockets=(str(path), str(regular), str(tmp_path)))
    link = tmp_path / "via-link"
    link.symlink_to(path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert nested.engine_socket_binds(_binds(f"{path}:/s"), context)
        assert nested.engine_socket_binds(_binds(f"{link}:/s"), context)  # resolved as mounted
        assert not nested.engine_socket_binds(_binds(f"{tmp_path}:/s"), context)  # its directory
        assert not nested.engine_socket_binds(_binds(f"{regular}:/s"), context)  # a file


def test_only_the_guarded_binds_leave_the_request_the_policy_decides() -> None:
    request = _request(
        {
            "Image": "x",
            "HostConfig": {
                "Binds": ["/srv/a:/a", "/run/docker.sock:/d", "vol:/v"],
                "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/e"}],
                "Privileged": True,
            },
        }
    )
    guarded = nested.engine_socket_binds(request, Context())
    assert [m.origin for m in guarded] == ["HostConfig.Binds[1]", "HostConfig.Mounts[0]"]
    decided = nested.without(request, guarded)
    assert [m.source for m in decided.containers[0].mounts] == ["/srv/a", "vol"]
    assert decided.containers[0].privileged  # everything else is still decided
    assert nested.without(request, ()) == request


def test_every_guarded_bind_of_a_body_is_rewritten() -> None:
    body = {
        "Image": "x",
        "HostConfig": {
            "Binds": ["/srv:/srv", "/var/run/docker.sock:/var/run/docker.sock"],
            "Mounts": [
                {"Type": "bind", "source": "/run/docker.sock", "Target": "/d", "ReadOnly": True}
            ],
        },
    }
    guarded = nested.engine_socket_binds(_request(body), Context())
    rewritten = json.loads(nested.rewrite(json.dumps(body).encode(), guarded, NESTED))
    assert rewritten["HostConfig"]["Binds"] == ["/srv:/srv", f"{NESTED}:/var/run/docker.sock"]
    assert rewritten["HostConfig"]["Mounts"] == [  # the client's "source" spelling kept
        {"Type": "bind", "source": NESTED, "Target": "/d", "ReadOnly": True}
    ]


def test_a_legacy_start_body_is_not_rewritten_but_refused() -> None:
    request = _request({"Binds": ["/var/run/docker.sock:/s"]}, "/v1.23/containers/x/start")
    guarded = nested.engine_socket_binds(request, Context())
    assert [m.origin for m in guarded] == ["Binds[0]"]
    with pytest.raises(nested.CannotRewrite) as caught:
        nested.rewrite(b'{"Binds": ["/var/run/docker.sock:/s"]}', guarded, NESTED)
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "body",
    [
        {"HostConfig": {"Binds": []}},  # the bind is no longer where it was
        {"HostConfig": {"Binds": ["/elsewhere:/s"]}},  # something else in its place
        {"HostConfig": {}},
        {},
    ],
)
def test_a_body_that_does_not_hold_the_bind_where_it_was_is_refused(body: dict[str, Any]) -> None:
    (mount,) = nested.engine_socket_binds(_binds("/var/run/docker.sock:/s"), Context())
    with pytest.raises(nested.CannotRewrite):
        nested.rewrite(json.dumps(body).encode(), (mount,), NESTED)


def test_clients_sharing_a_tenant_get_sockets_of_their_own(tmp_path: Path) -> None:
    """A nested socket acts as the client that created it: two users in one
    tenant are audited as themselves, not as whoever came first."""
    served: list[Listener] = []
    sockets = nested.NestedSockets(str(tmp_path / "n"), served.append)
    alice = Identity("local", uid=1001, user="alice", tenant="ci")
    carol = Identity("local", uid=1003, user="carol", tenant="ci")
    runner = Identity("remote", subject="CN=runner-1", tenant="ci")
    try:
        paths = {sockets.socket_for(who, "tenant") for who in (alice, carol, runner)}
        assert len(paths) == 3
        assert [listener.fixed.identity for listener in served if listener.fixed] == [
            alice,
            carol,
            runner,
        ]
        # The same user from another process (another pid) is the same client.
        again = Identity("local", uid=1001, pid=77, user="alice", process="sh", tenant="ci")
        assert sockets.socket_for(again, "tenant") in paths
        assert sockets.socket_for(Identity("other", uid=1001, tenant="ci"), "tenant") not in paths
        assert all(served_one.name.endswith("/nested") for served_one in served)
    finally:
        for listener in served:
            remove_listener(listener)


def test_issued_knows_only_its_own_sockets(tmp_path: Path) -> None:
    served: list[Listener] = []
    sockets = nested.NestedSockets(str(tmp_path / "n"), served.append)
    try:
        path = sockets.socket_for(Identity("local", uid=1), "tenant")
        link = tmp_path / "link.sock"
        link.symlink_to(path)
        assert sockets.issued(path)
        assert sockets.issued(str(link))  # resolved as the engine would mount it
        assert not sockets.issued(str(tmp_path / "n"))
        assert not sockets.issued("/var/run/docker.sock")
    finally:
        for listener in served:
            remove_listener(listener)
