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


def below(path: str, root: str) -> bool:
    """Is ``path`` strictly inside ``root``? ``root`` may hold globs
    (``/home/*``: inside some home directory, never a home directory itself);
    its literal part is resolved through symlinks like the path."""
    wanted = root.strip("/").split("/")
    literal = [part for part in wanted if not any(c in part for c in "*?[")]
    if len(literal) == len(wanted):
        wanted = resolve(root).strip("/").split("/")
    parts = path.strip("/").split("/")
    if wanted == [""]:
        return parts != [""]
    return len(parts) > len(wanted) and all(
        fnmatch.fnmatchcase(p, q) for p, q in zip(parts, wanted, strict=False)
    )


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


SCAN_LIMIT = 10_000  # directory entries looked at below one bind source


def contains(path: str, pattern: str) -> bool:
    """Would a bind of ``path`` expose something a deny pattern names below it?

    An anchored pattern (``/tmp/.X11-unix``) is below ``path`` when ``path``
    is one of its ancestors; a name (``.ssh``, ``.config/containers``) is
    looked for in ``path`` and in each directory directly inside it (a bind
    of ``/home`` exposes ``/home/admin/.ssh``).
    """
    parts = [p for p in path.strip("/").split("/") if p]
    wanted = pattern.strip("/").split("/")
    if pattern.startswith("/"):
        return len(parts) < len(wanted) and all(
            fnmatch.fnmatchcase(p, q) for p, q in zip(parts, wanted, strict=False)
        )
    globbed = "*" in pattern or "?" in pattern
    candidates = [path] if globbed else [path, *_child_dirs(path)]
    return any(os.path.lexists(os.path.join(directory, pattern)) for directory in candidates)


def _child_dirs(path: str) -> list[str]:
    children = []
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries):
                if count >= SCAN_LIMIT:
                    raise OSError(f"{path} holds too many entries to check")
                if entry.is_dir(follow_symlinks=False):
                    children.append(entry.path)
    except (FileNotFoundError, NotADirectoryError):
        return []  # nothing there yet (the engine creates it), or a single file
    return children


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
