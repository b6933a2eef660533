"""The running service: open the listeners a configuration declares, serve,
reload on ``SIGHUP`` or when a file changes, and stop on ``SIGTERM``.

A reload reads and validates the configuration and every policy again and
swaps the whole regime in at once; an invalid file leaves the running one in
force and logs why (``FILE:LINE:COL``). Requests already decided and open
streams are untouched; each connection picks up the new regime at its next
request. Listener and upstream changes need a restart (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from sockproxy import activation, audit
from sockproxy.checks import Context
from sockproxy.config import Config, ConfigError, ListenerSpec, load_config
from sockproxy.engine import EnginePool
from sockproxy.identity import forget_names
from sockproxy.listener import (
    Listener,
    ListenError,
    open_listener,
    open_tcp_listener,
    remove_listener,
    tls_server_context,
)
from sockproxy.metrics import Metrics, serve_metrics
from sockproxy.nested import NestedSockets
from sockproxy.policy import PolicyError
from sockproxy.regime import Regime, build_regime
from sockproxy.server import Server
from sockproxy.upstream import detect_upstream, probe, unix_path

log = structlog.get_logger("sockproxy")

WATCH_INTERVAL = 1.0  # seconds between checks of the files' modification times


def adopt(inherited: Sequence[activation.Inherited]) -> list[Listener]:
    """Sockets systemd passed, as listeners systemd keeps owning."""
    return [
        Listener(
            item.address if item.address.startswith("/") else "",
            item.sock,
            0,
            name=item.name,
            owned=False,
        )
        for item in inherited
    ]


def open_listeners(config: Config, inherited: Sequence[Listener] = ()) -> list[Listener]:
    """Every listener of the configuration (all or none)."""
    opened: list[Listener] = []
    by_name = {listener.name: listener for listener in inherited}
    claimed = {spec.address for spec in config.listeners if spec.kind == "systemd"}
    unclaimed = sorted(set(by_name) - claimed)
    if unclaimed:
        raise ListenError(
            "systemd passed sockets no listener takes: "
            + ", ".join(unclaimed)
            + " (give each a listener with 'systemd: NAME')"
        )
    try:
        for spec in config.listeners:
            opened.append(_open(spec, by_name))
    except ListenError:
        for listener in opened:
            remove_listener(listener)
        raise
    return opened


def _open(spec: ListenerSpec, inherited: dict[str, Listener]) -> Listener:
    if spec.kind == "systemd":
        found = inherited.get(spec.address)
        if found is None:
            raise ListenError(
                f"listener {spec.name}: systemd passed no socket named {spec.address}"
            )
        return Listener(found.path, found.sock, 0, name=spec.name, owned=False)
    if spec.kind == "unix":
        return open_listener(
            spec.address, mode=spec.mode, group=spec.group, owner=spec.owner, name=spec.name
        )
    tls = tls_server_context(spec.tls.cert, spec.tls.key, spec.tls.client_ca) if spec.tls else None
    listener = open_tcp_listener(spec.address, tls=tls, name=spec.name)
    if tls is None:
        log.warning(
            "PLAIN TCP LISTENER: anyone who can reach it controls the engine, with no identity",
            listener=spec.name,
            address=listener.address,
        )
    return listener


@dataclass
class Reloader:
    """Re-reads the files and swaps the regime when they change or on SIGHUP."""

    server: Server
    config: Config
    context: Context
    on_reload: Callable[[bool], None] = lambda ok: None
    _stamps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stamps = self._read_stamps()

    def _read_stamps(self) -> dict[str, int]:
        stamps = {}
        for path in self.server.regime.files:
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                stamps[path] = stat.st_mtime_ns + stat.st_ino + stat.st_size
        return stamps

    def reload(self, why: str) -> bool:
        """Load everything again; swap it in only if all of it is valid."""
        current = self.server.regime
        try:
            config = load_config(self.config.source) if self.config.source else self.config
            regime = build_regime(config, self.context, current.generation + 1)
        except (ConfigError, PolicyError) as exc:
            log.error(
                "reload failed: the running policy stays in force", why=why, errors=exc.errors
            )
            self._stamps = self._read_stamps()
            self.on_reload(False)
            return False
        restart_only = ("listeners", "upstream", "metrics", "nested_dir")
        if any(getattr(config, key) != getattr(self.config, key) for key in restart_only):
            log.warning("listener, upstream, metrics and nested-sockets changes need a restart")
        forget_names()
        self.server.swap(regime)
        self._stamps = self._read_stamps()
        log.info("reloaded", why=why, generation=regime.generation, policies=_digests(regime))
        self.on_reload(True)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self._read_stamps() != self._stamps:
                self.reload("a file changed")


def _notified_reload(reloader: Reloader) -> None:
    """SIGHUP (systemctl reload): tell systemd while the reload runs."""
    activation.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        reloader.reload("SIGHUP")
    finally:
        activation.notify("READY=1")


def _digests(regime: Regime) -> dict[str, str]:
    return {name: policy.digest for name, policy in regime.policies.items()}


async def serve(config: Config, grace: float, inherited: Sequence[Listener] = ()) -> int:
    """Run until SIGTERM/SIGINT; reload on SIGHUP and file changes."""
    listen_paths = [spec.address for spec in config.listeners if spec.kind == "unix"]
    listen_paths += [listener.path for listener in inherited if listener.path]
    upstream = (
        unix_path(config.upstream) if config.upstream else detect_upstream(os.environ, listen_paths)
    )
    kind = ""
    try:
        engine = await probe(upstream)
        kind = engine.kind
        log.info(
            "engine",
            socket=upstream,
            kind=engine.kind,
            version=engine.version,
            api_version=engine.api_version,
        )
    except Exception as exc:  # the engine may come up later: requests get 502 until then
        log.warning("engine not answering", socket=upstream, error=str(exc) or type(exc).__name__)
    # The engine's kind refines decisions where the engines differ (an
    # unknown engine gets the stricter reading).
    context = Context(own_sockets=(*listen_paths, upstream, config.nested_dir), engine=kind)
    regime = build_regime(config, context)
    for name, policy in regime.policies.items():
        if not policy.source:
            log.warning("no --policy given: every recognised request is allowed", policy=name)
    listeners = open_listeners(config, inherited)
    server = Server(listeners, EnginePool(upstream), regime, config.limits)
    server.nested = NestedSockets(config.nested_dir, lambda lst: server.spawn(server.serve(lst)))
    scrapes = None
    if config.metrics:
        server.metrics = Metrics()
        try:
            scrapes = await serve_metrics(server.metrics, config.metrics)
        except (ValueError, ListenError):
            for listener in listeners:
                remove_listener(listener)
            raise
        log.info("metrics", address=scrapes.address)
    await server.start()
    activation.notify("READY=1")
    log.info(
        "listening",
        listeners={listener.name: listener.address for listener in listeners},
        upstream=upstream,
        policies=_digests(regime),
    )
    reloader = Reloader(server, config, context)
    metrics = server.metrics
    if metrics is not None:
        reloader.on_reload = lambda ok: metrics.reload_done("ok" if ok else "failed")
    watcher = asyncio.get_running_loop().create_task(reloader.watch())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _notified_reload, reloader)
    await stop.wait()
    watcher.cancel()
    activation.notify("STOPPING=1")
    log.info("shutting down")
    await server.shutdown(grace)  # nested sockets are removed with the rest
    if scrapes is not None:
        scrapes.close()
        await scrapes.wait_closed()
    log.info("stopped")
    audit.flush()
    return 0
