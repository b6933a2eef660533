"""Guarded nested sockets: the engine socket "mounted" into a container is a
sockproxy socket that carries the creator's identity and policy.

A policy with ``nested-socket: same`` (or a stricter policy file) turns a
bind of an engine socket (``-v /var/run/docker.sock:/var/run/docker.sock``)
into a bind of a socket sockproxy opened for that client: whatever runs in
the container talks to sockproxy, as the client that created it, under the
nested policy. Only binds of the engine sockets themselves are rewritten;
binds of directories that hold them, and of other sockets, are still
decided by the checks (and refused by the default policy).

The nested sockets live in one directory only sockproxy's user can enter
(0700); the socket files are 0666 so a non-root process in the container
can use its bind mount. A client naming a nested socket itself is refused
by the ``engine-socket`` check like any other socket.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable

from sockproxy import hostpaths, jsonread
from sockproxy.checks import Context
from sockproxy.errors import ProxyError
from sockproxy.identity import Identity
from sockproxy.jsonread import JsonObject, JsonValue
from sockproxy.listener import Fixed, Listener, open_listener
from sockproxy.model import Mount, Request

# Where clients expect a Docker API socket (whether or not one is there on
# this host): a bind of one of these asks for "the engine".
DOCKER_API_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/user/*/podman/podman.sock",
    "/var/run/user/*/podman/podman.sock",
    "/run/user/*/docker.sock",
)


def engine_socket_binds(request: Request, context: Context) -> tuple[Mount, ...]:
    """The bind mounts whose source is a Docker API socket itself: a
    conventional engine socket path, the upstream, or a sockproxy listener."""
    found: list[Mount] = []
    for spec in request.containers:
        for mount in spec.mounts:
            bind = mount.kind == "bind" and mount.source.startswith("/")
            if bind and _asks_for_engine(mount.source, context):
                found.append(mount)
    return tuple(found)


def _asks_for_engine(source: str, context: Context) -> bool:
    paths = {hostpaths.clean(source), hostpaths.resolve(source)}
    if any(fnmatch.fnmatchcase(p, pattern) for p in paths for pattern in DOCKER_API_SOCKETS):
        return True
    own = {hostpaths.resolve(p) for p in context.own_sockets}
    return bool(paths & own) and stat.S_ISSOCK(_mode(hostpaths.resolve(source)))


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def without(request: Request, mounts: tuple[Mount, ...]) -> Request:
    """The request as policy decides it: the rewritten binds are guarded by
    construction, the rest is checked as usual."""
    containers = tuple(
        dataclasses.replace(spec, mounts=tuple(m for m in spec.mounts if m not in mounts))
        for spec in request.containers
    )
    return dataclasses.replace(request, containers=containers)


_TOKEN = re.compile(r"([A-Za-z_]+)|\[(\d+)\]|\.")


def rewrite(body: bytes, mounts: tuple[Mount, ...], source: str) -> bytes:
    """The body with each of ``mounts`` bound from ``source`` instead.

    Mounts remember where they came from in the engine's spelling
    (``HostConfig.Binds[0]``, ``HostConfig.Mounts[1]``, libpod ``mounts[0]``);
    anything else (a start body, a kube document) is refused rather than
    guessed at.
    """
    value = jsonread.decode(body)
    for mount in mounts:
        tokens = _tokens(mount.origin)
        value = _update(value, tokens, _new_source(mount, source))
    return jsonread.encode(value)


class CannotRewrite(ProxyError):
    status = 403
    close = False


def _tokens(origin: str) -> list[str | int]:
    tokens: list[str | int] = []
    for name, index in _TOKEN.findall(origin):
        if name:
            tokens.append(name)
        elif index:
            tokens.append(int(index))
    if "".join(m.group(0) for m in _TOKEN.finditer(origin)) != origin or not tokens:
        raise CannotRewrite(f"sockproxy: cannot give {origin} a nested socket")
    if tokens[:2] not in (["HostConfig", "Binds"], ["HostConfig", "Mounts"], ["mounts"]) and tokens[
        :1
    ] != ["mounts"]:
        raise CannotRewrite(f"sockproxy: cannot give {origin} a nested socket")
    return tokens


def _new_source(mount: Mount, source: str) -> Callable[[JsonValue], JsonValue]:
    def replace(leaf: JsonValue) -> JsonValue:
        if isinstance(leaf, str):  # "SRC:DST[:OPTIONS]"
            if not leaf.startswith(mount.source + ":"):
                raise CannotRewrite(f"sockproxy: cannot give {mount.origin} a nested socket")
            return source + leaf[len(mount.source) :]
        if isinstance(leaf, JsonObject):
            name = "source" if leaf.has("source") else "Source"
            return leaf.replace(name, source)
        raise CannotRewrite(f"sockproxy: cannot give {mount.origin} a nested socket")

    return replace


def _update(
    value: JsonValue, tokens: list[str | int], leaf: Callable[[JsonValue], JsonValue]
) -> JsonValue:
    if not tokens:
        return leaf(value)
    head, rest = tokens[0], tokens[1:]
    if isinstance(head, int) and isinstance(value, list) and head < len(value):
        items = list(value)
        items[head] = _update(items[head], rest, leaf)
        return items
    if isinstance(head, str) and isinstance(value, JsonObject) and value.has(head):
        return value.replace(head, _update(value.field(head), rest, leaf))
    raise CannotRewrite("sockproxy: cannot find the bind to give a nested socket")


class NestedSockets:
    """The nested sockets opened so far, one per (client, policy)."""

    def __init__(self, directory: str, serve: Callable[[Listener], None]) -> None:
        self.directory = directory
        self._serve = serve  # starts accepting on a new listener
        self._open: dict[str, Listener] = {}

    def socket_for(self, identity: Identity, policy_key: str) -> str:
        """The nested socket for this client and policy (opened on first use)."""
        # The socket acts as its creator: clients sharing a tenant are still
        # different users (uid or subject), audited as themselves.
        who = identity.subject or identity.uid
        key = f"{identity.owner}\0{who}\0{identity.listener}\0{policy_key}"
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        path = os.path.join(self.directory, f"{name}.sock")
        listener = self._open.get(path)
        if listener is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            os.chmod(self.directory, 0o700)
            fixed = Fixed(identity, policy_key)
            listener = open_listener(
                path, mode=0o666, name=f"{identity.listener}/nested", fixed=fixed
            )
            self._open[path] = listener
            self._serve(listener)
        return path

    def issued(self, path: str) -> bool:
        """Is ``path`` one of the nested sockets sockproxy opened?"""
        return hostpaths.resolve(path) in self._open or path in self._open
