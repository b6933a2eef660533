"""Listen stage: the Unix socket clients connect to.

The socket file appears atomically with its final mode and group: it is
bound under a temporary name, given its permissions, and renamed into place,
so there is no moment when the path exists with the umask's mode. A stale
socket file (nobody answering) is replaced; a live one is refused.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import stat
from dataclasses import dataclass

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_PATH = 107


class ListenError(Exception):
    """The listening socket cannot be created."""


@dataclass(frozen=True, slots=True)
class Listener:
    path: str
    sock: socket.socket
    inode: int


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise ListenError(f"--socket-group: no group named {group!r}") from exc


def _answers(path: str) -> bool:
    """Is a server accepting connections on the socket at ``path``?"""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise ListenError(f"{path}: cannot tell whether a server is using it: {exc}") from exc
    finally:
        probe.close()
    return True


def _check_existing(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
    if _answers(path):
        raise ListenError(f"{path}: another server is already listening there")


def open_listener(
    path: str, *, mode: int = 0o660, group: str | None = None, backlog: int = 1024
) -> Listener:
    """Create, permission and publish the listening socket at ``path``."""
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}.{os.getpid()}")
    if len(temp.encode()) > MAX_PATH:
        temp = os.path.join(directory, f".sp{os.getpid()}")
    if len(path.encode()) > MAX_PATH or len(temp.encode()) > MAX_PATH:
        raise ListenError(f"{path}: socket paths are limited to {MAX_PATH} bytes")
    if not os.path.isdir(directory):
        raise ListenError(f"{directory}: no such directory")
    _check_existing(path)
    gid = _gid(group) if group is not None else -1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        sock.bind(temp)
        os.chmod(temp, mode)
        if gid != -1:
            os.chown(temp, -1, gid)
        sock.listen(backlog)
        os.rename(temp, path)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ListenError(f"{path}: cannot create the socket: {exc}") from exc
    sock.setblocking(False)
    return Listener(path, sock, os.stat(path).st_ino)


def remove_listener(listener: Listener) -> None:
    """Close the socket and remove its file if it is still ours."""
    listener.sock.close()
    with contextlib.suppress(OSError):
        if os.lstat(listener.path).st_ino == listener.inode:
            os.unlink(listener.path)
