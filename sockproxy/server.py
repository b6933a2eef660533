"""The asyncio shell: listeners, connection bookkeeping and graceful shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from sockproxy.client import ClientSide
from sockproxy.engine import EnginePool
from sockproxy.limits import Limits
from sockproxy.listener import Listener, remove_listener
from sockproxy.lookup import EngineClient
from sockproxy.metrics import Metrics
from sockproxy.nested import NestedSockets
from sockproxy.policy import Policy
from sockproxy.regime import Regime, single

log = structlog.get_logger("sockproxy")


class Server:
    def __init__(
        self,
        listeners: Sequence[Listener],
        pool: EnginePool,
        regime: Regime | Policy,
        limits: Limits | None = None,
    ) -> None:
        self.listeners = list(listeners)
        self.pool = pool
        # What is in force; a reload replaces it whole (connections notice
        # the new generation at their next request).
        self.regime = regime if isinstance(regime, Regime) else single(regime)
        self.limits = limits or Limits()
        self.engine_client = EngineClient(pool.path)
        self.nested: NestedSockets | None = None  # set when policies may give nested sockets
        self.metrics: Metrics | None = None  # set when --metrics is given
        self._per_uid: Counter[int | str] = Counter()
        self._refused: set[ClientSide] = set()  # answered 503, closing
        self.draining = False
        self.connections: set[ClientSide] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed = asyncio.Event()

    async def start(self) -> None:
        for listener in self.listeners:
            await self.serve(listener)

    async def serve(self, listener: Listener) -> None:
        """Accept connections on one more listener (at start, or a nested socket)."""
        loop = asyncio.get_running_loop()
        if listener not in self.listeners:
            self.listeners.append(listener)
        if listener.path:
            server = await loop.create_unix_server(
                lambda: ClientSide(self, listener), sock=listener.sock
            )
        else:
            server = await loop.create_server(
                lambda: ClientSide(self, listener), sock=listener.sock, ssl=listener.tls
            )
        self._servers.append(server)

    def swap(self, regime: Regime) -> None:
        """Put a new regime in force (reload): requests decided from now on use it."""
        self.regime = regime

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a helper task (opening an engine connection) that nobody awaits."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error", exc_info=task.exception())

    def admit(self, connection: ClientSide) -> str | None:
        """Count a new connection in, or say why it is refused."""
        if len(self.connections) >= self.limits.max_connections:
            log.warning("connection refused", reason="max-connections", peer=connection.peer_key)
            self._refused.add(connection)
            return "sockproxy: too many connections"
        key = connection.peer_key
        if self._per_uid[key] >= self.limits.max_connections_per_uid:
            log.warning("connection refused", reason="max-connections-per-uid", peer=key)
            self._refused.add(connection)
            what = f"uid {key}" if isinstance(key, int) else key
            return f"sockproxy: too many connections from {what}"
        self.connections.add(connection)
        self._per_uid[key] += 1
        return None

    def release(self, connection: ClientSide) -> None:
        self._refused.discard(connection)
        if connection in self.connections:
            self.connections.discard(connection)
            key = connection.peer_key
            self._per_uid[key] -= 1
            if not self._per_uid[key]:
                del self._per_uid[key]
        if self.draining and not self.connections:
            self._all_closed.set()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace``
        seconds, then close whatever is left."""
        self.draining = True
        for server in self._servers:
            server.close()
        for listener in self.listeners:
            remove_listener(listener)
        for connection in list(self.connections):
            connection.close_if_idle()
        if self.connections:
            log.info("draining", connections=len(self.connections), grace_s=grace)
            try:
                await asyncio.wait_for(self._all_closed.wait(), grace)
            except TimeoutError:
                log.warning("grace period over, closing", connections=len(self.connections))
        for connection in [*self.connections, *self._refused]:
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        self.pool.close()
        await self.engine_client.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks
