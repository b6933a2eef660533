"""The asyncio shell: listeners, connection tasks and graceful shutdown.

It owns the one catch-all per connection: an unexpected error is logged,
answered with a 500 if the connection is idle between responses, and ends
that connection only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from sockproxy.connection import ClientProtocol, Connection
from sockproxy.listener import Listener, remove_listener
from sockproxy.policy import Policy
from sockproxy.upstream import EnginePool

log = structlog.get_logger("sockproxy")


class Server:
    def __init__(self, listeners: Sequence[Listener], pool: EnginePool, policy: Policy) -> None:
        self.listeners = list(listeners)
        self.pool = pool
        self.policy = policy
        self.draining = False
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            server = await loop.create_unix_server(lambda: ClientProtocol(self), sock=listener.sock)
            self._servers.append(server)

    def spawn(self, connection: Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._run(connection))
        self._connections[task] = connection
        task.add_done_callback(self._connections.pop)

    async def _run(self, connection: Connection) -> None:
        try:
            await connection.run()
        except asyncio.CancelledError:
            connection.writer.close()
            raise
        except Exception:
            log.exception("connection failed")
            connection.writer.close()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace``
        seconds, then close whatever is left."""
        self.draining = True
        for server in self._servers:
            server.close()
        for listener in self.listeners:
            remove_listener(listener)
        for connection in list(self._connections.values()):
            connection.close_if_idle()
        pending = set(self._connections)
        if pending:
            log.info("draining", connections=len(pending), grace_s=grace)
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        self.pool.close()
