"""Listen stage: the sockets clients connect to.

Unix sockets (the usual case), TCP sockets that require TLS with client
certificates, and sockets inherited from systemd.

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
import pwd
import socket
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass

from sockproxy.identity import Identity

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_PATH = 107


class ListenError(Exception):
    """The listening socket cannot be created."""


@dataclass(frozen=True, slots=True)
class Fixed:
    """A listener whose every client acts as one identity under one policy
    (a nested socket: its peers are processes in a container)."""

    identity: Identity
    policy: str  # the key of the policy in the regime


@dataclass(frozen=True, slots=True)
class Listener:
    path: str  # the socket file; "" for TCP
    sock: socket.socket
    inode: int
    name: str = ""  # the configuration's name for it, in audit events
    tls: ssl.SSLContext | None = None
    owned: bool = True  # sockproxy made the file and removes it (systemd's are not)
    fixed: Fixed | None = None

    @property
    def address(self) -> str:
        if self.path:
            return self.path
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"


def _gid(group: str) -> int:
    return _numeric_id(group, lambda name: grp.getgrnam(name).gr_gid, "--socket-group: no group")


def _uid(owner: str) -> int:
    return _numeric_id(owner, lambda name: pwd.getpwnam(name).pw_uid, "owner: no user")


def _numeric_id(text: str, lookup: Callable[[str], int], missing: str) -> int:
    """A uid or gid given as a number or a name."""
    if text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError as exc:
        raise ListenError(f"{missing} named {text!r}") from exc


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
    path: str,
    *,
    mode: int = 0o660,
    group: str | None = None,
    owner: str | None = None,
    name: str = "",
    fixed: Fixed | None = None,
    backlog: int = 1024,
) -> Listener:
    """Create, permission and publish the listening socket at ``path``."""
    path = os.path.abspath(path)
    directory, filename = os.path.split(path)
    temp = os.path.join(directory, f".{filename}.{os.getpid()}")
    if len(temp.encode()) > MAX_PATH:
        temp = os.path.join(directory, f".sp{os.getpid()}")
    if len(path.encode()) > MAX_PATH or len(temp.encode()) > MAX_PATH:
        raise ListenError(f"{path}: socket paths are limited to {MAX_PATH} bytes")
    if not os.path.isdir(directory):
        raise ListenError(f"{directory}: no such directory")
    _check_existing(path)
    gid = _gid(group) if group is not None else -1
    uid = _uid(owner) if owner is not None else -1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        sock.bind(temp)
        os.chmod(temp, mode)
        if gid != -1 or uid != -1:
            os.chown(temp, uid, gid)
        sock.listen(backlog)
        os.rename(temp, path)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ListenError(f"{path}: cannot create the socket: {exc}") from exc
    sock.setblocking(False)
    return Listener(path, sock, os.stat(path).st_ino, name=name or path, fixed=fixed)


def open_tcp_listener(
    address: str, *, tls: ssl.SSLContext | None, name: str = "", backlog: int = 1024
) -> Listener:
    """Listen on ``HOST:PORT`` (port 0 picks a free one)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        info = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(backlog)
    except (OSError, ValueError) as exc:
        raise ListenError(f"{address}: cannot listen: {exc}") from exc
    sock.setblocking(False)
    return Listener("", sock, 0, name=name or address, tls=tls, owned=False)


def tls_server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS 1.2+ that requires a client certificate signed by ``client_ca``
    (what ``DOCKER_TLS_VERIFY`` clients present)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(f"tls: cannot load certificates: {exc}") from exc
    return context


def remove_listener(listener: Listener) -> None:
    """Close the socket and remove its file if it is still ours."""
    listener.sock.close()
    if not listener.owned or not listener.path:
        return
    with contextlib.suppress(OSError):
        if os.lstat(listener.path).st_ino == listener.inode:
            os.unlink(listener.path)
