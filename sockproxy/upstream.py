"""The engine side: where the engine's socket is, what engine answers there,
and a pool of keep-alive connections to it.

Connections to the engine are kept alive and reused: opening one per request
doubles the engine's own work per request.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from sockproxy.errors import EngineUnreachable

# Buffer and StreamReader limit for every engine connection.
STREAM_LIMIT = 256 * 1024
WRITE_HIGH_WATER = 1024 * 1024


class AddressError(Exception):
    """A socket address that sockproxy cannot use."""


def unix_path(url: str) -> str:
    """The path of a ``unix:///PATH`` address (a bare absolute path is accepted too)."""
    if url.startswith("unix://"):
        path = url[len("unix://") :]
    elif url.startswith("/"):
        path = url
    else:
        raise AddressError(f"{url!r}: only unix:///PATH addresses are supported")
    if not path.startswith("/"):
        raise AddressError(f"{url!r}: the socket path must be absolute")
    return path


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def detect_upstream(env: Mapping[str, str], own_paths: Sequence[str]) -> str:
    """Find the engine socket when ``--upstream`` is not given.

    Order: ``$CONTAINER_HOST``/``$DOCKER_HOST`` naming a unix socket that is
    not one of ours, ``$XDG_RUNTIME_DIR/podman/podman.sock``,
    ``/run/podman/podman.sock``, ``/var/run/docker.sock``.
    """
    own = {os.path.realpath(p) for p in own_paths}
    candidates: list[str] = []
    for var in ("CONTAINER_HOST", "DOCKER_HOST"):
        value = env.get(var, "")
        if value.startswith("unix://"):
            candidates.append(value[len("unix://") :])
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "podman", "podman.sock"))
    candidates += ["/run/podman/podman.sock", "/var/run/docker.sock"]
    for path in candidates:
        if os.path.realpath(path) not in own and _is_socket(path):
            return path
    raise AddressError(
        "no engine socket found (looked at $CONTAINER_HOST, $DOCKER_HOST, "
        + ", ".join(candidates[-3:] if len(candidates) >= 3 else candidates)
        + "); pass --upstream unix:///PATH"
    )


@dataclass(frozen=True, slots=True)
class EngineInfo:
    kind: str  # "podman", "docker" or "unknown"
    version: str
    api_version: str


async def probe(path: str, limit: float = 5.0) -> EngineInfo:
    """Ask the engine at ``path`` who it is (``GET /version``)."""
    connector = aiohttp.UnixConnector(path=path)
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=limit)
        ) as session,
        session.get("http://engine/version") as response,
    ):
        response.raise_for_status()
        data: Any = await response.json(content_type=None)
    components = data.get("Components") or []
    names = " ".join(str(c.get("Name", "")) for c in components if isinstance(c, dict))
    kind = "podman" if "podman" in names.lower() else "docker"
    return EngineInfo(kind, str(data.get("Version", "?")), str(data.get("ApiVersion", "?")))


class EngineConnection:
    """One HTTP/1.1 connection to the engine."""

    __slots__ = ("idle_since", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.idle_since = 0.0

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class EnginePool:
    """Keep-alive connections to the engine, reused most-recent first."""

    def __init__(self, path: str, *, max_idle: int = 64, idle_timeout: float = 30.0) -> None:
        self.path = path
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: list[EngineConnection] = []
        self._closed = False

    async def acquire(self) -> EngineConnection:
        """An idle connection if one is healthy, else a new one."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable() and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        return await self.connect()

    async def connect(self) -> EngineConnection:
        try:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=STREAM_LIMIT)
        except OSError as exc:
            raise EngineUnreachable(
                f"sockproxy: cannot reach the engine at {self.path}: {exc.strerror or exc}"
            ) from exc
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        return EngineConnection(reader, writer)

    def release(self, conn: EngineConnection) -> None:
        """Give back a connection whose last exchange ended cleanly."""
        if self._closed or len(self._idle) >= self.max_idle or not conn.usable():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
