"""systemd integration: socket activation (``LISTEN_FDS``) and readiness
notification (``NOTIFY_SOCKET``), by the sd_listen_fds(3) / sd_notify(3)
protocols, without a dependency.

Inherited sockets start at fd 3; ``LISTEN_PID`` must be this process (else
the variables were meant for someone else and are ignored), and
``LISTEN_FDNAMES`` names them (``FileDescriptorName=``). Each must be a
listening stream socket; anything else is refused rather than guessed at.
The variables are removed so that children don't inherit them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

from sockproxy.listener import ListenError

SD_LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True, slots=True)
class Inherited:
    name: str  # FileDescriptorName=, or "unknown" as systemd says when unnamed
    sock: socket.socket
    address: str  # the Unix path, or HOST:PORT


def inherited(environ: MutableMapping[str, str]) -> list[Inherited]:
    """The listening sockets systemd passed; empty when not socket-activated."""
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    names = environ.get("LISTEN_FDNAMES", "")
    for variable in _VARIABLES:
        environ.pop(variable, None)
    if not count or not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        raise ListenError(f"LISTEN_FDS={count!r} is not a number")
    labels = names.split(":") if names else []
    found = []
    for index in range(int(count)):
        fd = SD_LISTEN_FDS_START + index
        name = labels[index] if index < len(labels) and labels[index] else "unknown"
        found.append(_adopt(fd, name))
    return found


def _adopt(fd: int, name: str) -> Inherited:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"systemd socket {name} (fd {fd}): {exc.strerror}") from exc
    if sock.type != socket.SOCK_STREAM or sock.family not in (
        socket.AF_UNIX,
        socket.AF_INET,
        socket.AF_INET6,
    ):
        sock.detach()
        raise ListenError(f"systemd socket {name} (fd {fd}) is not a stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ListenError(f"systemd socket {name} (fd {fd}) is not listening")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    where = sock.getsockname()
    address = where if isinstance(where, str) else f"{where[0]}:{where[1]}"
    return Inherited(name, sock, address)


def notify(state: str) -> None:
    """Tell systemd (Type=notify) about READY=1, RELOADING=1, STOPPING=1;
    nothing when not started by systemd."""
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target:
        return
    if target.startswith("@"):  # abstract namespace
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError:
        pass  # systemd gone or not listening: nothing to tell
