"""Host paths as the engine will use them: cleaned, resolved, compared by
component.

sockproxy runs on the engine's host, so a bind source is resolved through
symlinks here, the way the engine's mount will follow them: a symlink
``/srv/x -> /`` is a bind of ``/``. Paths are compared by components, never
by string prefix (``/srv2`` is not under ``/srv``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import stat
from collections.abc import Iterable

# Engine and runtime sockets, wherever a distribution puts them. A bind of
# any of these, or of a directory holding one, hands over the engine.
ENGINE_SOCKET_PATTERNS: tuple[str, ...] = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/user/*/podman/podman.sock",
    "/run/user/*/docker.sock",
    "/var/run/user/*/podman/podman.sock",
    "/run/docker/containerd/containerd.sock",
    "/run/buildkit/buildkitd.sock",
)


def clean(path: str) -> str:
    """Lexically clean an absolute path as Go's filepath.Clean does."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def resolve(path: str) -> str:
    """The host path a mount of ``path`` would reach: cleaned, then with
    every symlink in the existing part resolved."""
    return os.path.realpath(clean(path))


def is_under(path: str, root: str) -> bool:
    """Is ``path`` ``root`` itself or inside it? (both absolute and clean)"""
    if root == "/":
        return True
    return path == root or path.startswith(root + "/")


def matches(path: str, pattern: str) -> bool:
    """Does ``path`` (or a directory above it) match a deny pattern?

    A pattern starting with ``/`` is anchored at the root
    (``/run/user/*/podman``); any other is a run of path components found
    anywhere (``.ssh``, ``.config/containers``). Components may be globs, and
    everything below a match matches too.
    """
    parts = path.strip("/").split("/")
    wanted = pattern.strip("/").split("/")
    starts = [0] if pattern.startswith("/") else range(len(parts) - len(wanted) + 1)
    for start in starts:
        window = parts[start : start + len(wanted)]
        if len(window) == len(wanted) and all(
            fnmatch.fnmatchcase(p, q) for p, q in zip(window, wanted, strict=True)
        ):
            return True
    return False


def engine_sockets(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Engine sockets that exist on this host now, plus ``extra`` paths
    (sockproxy's own listener and upstream)."""
    found: set[str] = {resolve(p) for p in extra}
    for pattern in ENGINE_SOCKET_PATTERNS:
        for candidate in glob.glob(pattern) if "*" in pattern else [pattern]:
            if os.path.exists(candidate):
                found.add(resolve(candidate))
    return tuple(sorted(found))


def reaches_socket(path: str, sockets: Iterable[str]) -> str | None:
    """The engine socket a bind of ``path`` (resolved) would expose, if any:
    the socket itself, or a directory that holds one."""
    for sock in sockets:
        if is_under(sock, path):
            return sock
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            return path
    except OSError:
        pass
    return None
