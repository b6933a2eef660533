"""Where the engine's socket is, and what engine answers there."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp


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
