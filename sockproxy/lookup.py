"""Decide on fresh engine state: ask the engine, just before a decision, what
it holds now about the object a request acts on.

A container's binds are checked when it is created, but the engine mounts
them when it starts, following symlinks again: a directory swapped for a
symlink in between would be mounted as its target. So a start (or restart)
is decided again on the bind sources the engine will mount, read from
``GET /containers/{id}/json`` and resolved on the host as it is now.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from sockproxy.errors import EngineUnreachable, ProxyError
from sockproxy.model import ContainerSpec, Mount

RECHECKED = frozenset({"container.start", "container.restart"})


class LookupFailed(ProxyError):
    """The engine's answer could not be read: refuse rather than guess."""

    status = 502


class EngineClient:
    """A small HTTP client to the engine socket, for lookups only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Lookups are rare (one per start): a connection each, closed after
            # use, so none idle outside the main pool's bounds.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.path, force_close=True),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def get_json(self, path: str) -> Any | None:
        """The JSON the engine answers, or None for a 404."""
        try:
            async with self._client().get(f"http://engine{path}") as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise LookupFailed(
                        f"sockproxy: the engine answered {response.status} to {path}"
                    )
                return await response.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise EngineUnreachable(
                f"sockproxy: cannot reach the engine at {self.path}: {reason}"
            ) from exc
        except aiohttp.ClientConnectionError as exc:
            raise EngineUnreachable(
                f"sockproxy: the engine closed the connection during a lookup: {exc}"
            ) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise LookupFailed(f"sockproxy: unreadable answer from the engine to {path}") from exc

    async def post_json(self, path: str, body: object) -> Any | None:
        """POST a JSON body; the JSON answer, or None when the engine refused."""
        try:
            async with self._client().post(f"http://engine{path}", json=body) as response:
                if response.status >= 300:
                    return None
                return await response.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            raise EngineUnreachable(f"sockproxy: cannot reach the engine at {self.path}") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise LookupFailed(f"sockproxy: unreadable answer from the engine to {path}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def mounts_at_start(client: EngineClient, container: str) -> ContainerSpec | None:
    """The bind mounts the engine will make for ``container``, as a spec for the
    bind checks; None when the engine knows no such container."""
    data = await client.get_json(f"/v1.41/containers/{quote(container, safe='')}/json")
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("Mounts") or [], list):
        raise LookupFailed("sockproxy: unexpected container inspect answer from the engine")
    mounts = []
    for index, item in enumerate(data.get("Mounts") or []):
        if isinstance(item, dict) and str(item.get("Type", "")).lower() == "bind":
            mounts.append(
                Mount(
                    kind="bind",
                    source=str(item.get("Source", "")),
                    target=str(item.get("Destination", "")),
                    read_only=not item.get("RW", True),
                    options=(),
                    origin=f"Mounts[{index}] as the engine holds it at start",
                )
            )
    return ContainerSpec(mounts=tuple(mounts), origin="the container being started")
