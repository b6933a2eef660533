"""Where the engine is: --upstream parsing and detection order."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockproxy.upstream import AddressError, detect_upstream, unix_path


@pytest.mark.parametrize(
    ("url", "path"), [("unix:///run/x.sock", "/run/x.sock"), ("/run/x.sock", "/run/x.sock")]
)
def test_unix_addresses(url: str, path: str) -> None:
    assert unix_path(url) == path


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:2375", "unix://relative.sock", "x.sock"])
def test_other_addresses_are_refused(url: str) -> None:
    with pytest.raises(AddressError):
        unix_path(url)


@pytest.fixture
def engine_socket(sockdir: Path) -> Iterator[str]:
    path = str(sockdir / "engine.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    yield path
    sock.close()


def test_container_host_is_preferred(engine_socket: str, sockdir: Path) -> None:
    env = {"CONTAINER_HOST": f"unix://{engine_socket}", "DOCKER_HOST": "unix:///nonexistent"}
    assert detect_upstream(env, [str(sockdir / "proxy.sock")]) == engine_socket


def test_docker_host_naming_our_own_listener_is_skipped(engine_socket: str, sockdir: Path) -> None:
    xdg = sockdir / "xdg"
    (xdg / "podman").mkdir(parents=True)
    podman = socket.socket(socket.AF_UNIX)
    podman.bind(str(xdg / "podman" / "podman.sock"))
    try:
        env = {"DOCKER_HOST": f"unix://{engine_socket}", "XDG_RUNTIME_DIR": str(xdg)}
        assert detect_upstream(env, [engine_socket]) == str(xdg / "podman" / "podman.sock")
    finally:
        podman.close()


def test_tcp_docker_host_is_not_an_upstream(engine_socket: str) -> None:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2375", "CONTAINER_HOST": f"unix://{engine_socket}"}
    assert detect_upstream(env, []) == engine_socket
