"""Listen stage: the client socket appears atomically, permissioned, and only once."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from sockproxy.listener import ListenError, open_listener, remove_listener


def test_socket_is_created_with_mode_0660_by_default(sockdir: Path) -> None:
    listener = open_listener(str(sockdir / "p.sock"))
    try:
        st = os.stat(listener.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert os.listdir(sockdir) == ["p.sock"]  # no temporary name left behind
    finally:
        remove_listener(listener)


def test_mode_and_group_are_applied(sockdir: Path) -> None:
    listener = open_listener(str(sockdir / "p.sock"), mode=0o600, group=str(os.getgid()))
    try:
        st = os.stat(listener.path)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o600, os.getgid())
    finally:
        remove_listener(listener)


def test_unknown_group_is_a_clear_error(sockdir: Path) -> None:
    with pytest.raises(ListenError, match="no group named"):
        open_listener(str(sockdir / "p.sock"), group="no-such-group-sockproxy")


def test_stale_socket_file_is_replaced(sockdir: Path) -> None:
    path = sockdir / "p.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    listener = open_listener(str(path))
    try:
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(path))
        probe.close()
    finally:
        remove_listener(listener)


def test_live_socket_is_refused(sockdir: Path) -> None:
    path = sockdir / "p.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(ListenError, match="another server is already listening"):
            open_listener(str(path))
        assert os.path.exists(path)
    finally:
        live.close()


def test_regular_file_is_never_replaced(sockdir: Path) -> None:
    path = sockdir / "p.sock"
    path.write_text("keep me")
    with pytest.raises(ListenError, match="not a socket"):
        open_listener(str(path))
    assert path.read_text() == "keep me"


def test_file_is_removed_on_exit_only_if_still_ours(sockdir: Path) -> None:
    path = sockdir / "p.sock"
    listener = open_listener(str(path))
    remove_listener(listener)
    assert not path.exists()
    listener = open_listener(str(path))
    os.unlink(path)
    path.write_text("someone else's")
    remove_listener(listener)
    assert path.read_text() == "someone else's"


def test_too_long_path_is_a_clear_error(sockdir: Path) -> None:
    with pytest.raises(ListenError, match="limited to 107 bytes"):
        open_listener(str(sockdir / ("x" * 120)))
