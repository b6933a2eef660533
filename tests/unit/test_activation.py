"""Socket activation (sd_listen_fds) and readiness notification (sd_notify)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sockproxy import activation

# Runs in a child whose fd 3 (and 4) are the sockets under test: prints what
# inherited() made of them, or the error, and what is left of the variables.
CHILD = """
import json, os, sys
from sockproxy import activation
from sockproxy.listener import ListenError
os.environ["LISTEN_PID"] = sys.argv[1] if sys.argv[1] != "self" else str(os.getpid())
try:
    found = [[i.name, i.address, i.sock.fileno()] for i in activation.inherited(os.environ)]
except ListenError as exc:
    found = str(exc)
left = [v for v in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if v in os.environ]
print(json.dumps({"found": found, "left": left}))
"""


def _child(socks: list[socket.socket], pid: str, **env: str) -> dict[str, object]:
    """Run CHILD with `socks` on fds 3, 4, ... and `env` added."""
    return _child_fds([sock.fileno() for sock in socks], pid, **env)


def _child_fds(fds: list[int], pid: str, **env: str) -> dict[str, object]:
    def place() -> None:
        for index, fd in enumerate(fds):
            os.dup2(fd, 3 + index)

    result = subprocess.run(
        [sys.executable, "-c", CHILD, pid],
        env={**os.environ, **env},
        preexec_fn=place,
        pass_fds=tuple(range(3, 3 + len(fds))),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


@pytest.fixture
def listening(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "a.sock"))
    sock.listen()
    return sock


def test_named_listening_sockets_are_adopted_and_the_variables_cleared(
    listening: socket.socket, tmp_path: Path
) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    out = _child([listening, tcp], "self", LISTEN_FDS="2", LISTEN_FDNAMES="docker:remote")
    assert out["found"] == [
        ["docker", str(tmp_path / "a.sock"), 3],
        ["remote", f"127.0.0.1:{port}", 4],
    ]
    assert out["left"] == []
    tcp.close()
    listening.close()


def test_sockets_meant_for_another_process_are_ignored(listening: socket.socket) -> None:
    out = _child([listening], "1", LISTEN_FDS="1")
    assert out == {"found": [], "left": []}
    listening.close()


def test_an_unnamed_socket_is_called_unknown(listening: socket.socket) -> None:
    out = _child([listening], "self", LISTEN_FDS="1")
    assert [name for name, _, _ in out["found"]] == ["unknown"]  # type: ignore[union-attr]
    listening.close()


def test_a_socket_that_is_not_listening_is_refused(tmp_path: Path) -> None:
    idle = socket.socket(socket.AF_UNIX)
    idle.bind(str(tmp_path / "idle.sock"))
    out = _child([idle], "self", LISTEN_FDS="1", LISTEN_FDNAMES="docker")
    assert out["found"] == "systemd socket docker (fd 3) is not listening"
    idle.close()


def test_a_datagram_socket_is_refused() -> None:
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out = _child([dgram], "self", LISTEN_FDS="1")
    assert out["found"] == "systemd socket unknown (fd 3) is not a stream socket"
    dgram.close()


def test_notify_sends_the_state_to_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        activation.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"


def test_notify_reaches_an_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sockproxy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        activation.notify("STOPPING=1")
        assert receiver.recv(100) == b"STOPPING=1"


def test_a_descriptor_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "file", "wb") as file:
        out = _child_fds([file.fileno()], "self", LISTEN_FDS="1", LISTEN_FDNAMES="docker")
    assert out["found"] == "systemd socket docker (fd 3): Socket operation on non-socket"


def test_a_count_that_is_not_a_number_is_refused(listening: socket.socket) -> None:
    out = _child([listening], "self", LISTEN_FDS="one")
    assert out == {"found": "LISTEN_FDS='one' is not a number", "left": []}
    listening.close()


def test_without_listen_fds_nothing_is_inherited() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "docker"}
    assert activation.inherited(environ) == []
    assert environ == {}


def test_notify_without_notify_socket_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("notify opened a socket with NOTIFY_SOCKET unset")

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(activation.socket, "socket", no_socket)
    activation.notify("READY=1")
