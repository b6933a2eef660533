"""Command line: ``sockproxy serve``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence

import structlog

from sockproxy import audit
from sockproxy.engine import EnginePool
from sockproxy.listener import ListenError, open_listener, remove_listener
from sockproxy.policy import PERMISSIVE, PolicyError, load_policy
from sockproxy.server import Server
from sockproxy.upstream import AddressError, detect_upstream, probe, unix_path

log = structlog.get_logger("sockproxy")


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode") from exc
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a permission mode")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sockproxy", description="A policy-enforcing proxy for container engine sockets."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument(
        "--listen",
        action="append",
        required=True,
        metavar="unix:///PATH",
        help="socket to listen on (repeatable)",
    )
    serve.add_argument(
        "--upstream", metavar="unix:///PATH", help="the engine's socket (default: detected)"
    )
    serve.add_argument(
        "--policy", metavar="FILE", help="policy file (default: the built-in permissive policy)"
    )
    serve.add_argument(
        "--socket-mode",
        type=_mode,
        default=0o660,
        metavar="MODE",
        help="permissions of the listening socket (default 0660)",
    )
    serve.add_argument("--socket-group", metavar="GROUP", help="group owning the listening socket")
    serve.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long requests in flight may finish at shutdown (default 10)",
    )
    serve.add_argument("--log-format", choices=("json", "console"), default="json")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return parser


async def serve(args: argparse.Namespace) -> int:
    listen_paths = [unix_path(url) for url in args.listen]
    upstream = (
        unix_path(args.upstream) if args.upstream else detect_upstream(os.environ, listen_paths)
    )
    policy = load_policy(args.policy) if args.policy else PERMISSIVE
    try:
        engine = await probe(upstream)
        log.info(
            "engine",
            socket=upstream,
            kind=engine.kind,
            version=engine.version,
            api_version=engine.api_version,
        )
    except Exception as exc:  # the engine may come up later: requests get 502 until then
        log.warning("engine not answering", socket=upstream, error=str(exc) or type(exc).__name__)
    listeners = []
    try:
        for path in listen_paths:
            listeners.append(open_listener(path, mode=args.socket_mode, group=args.socket_group))
    except ListenError:
        for listener in listeners:
            remove_listener(listener)
        raise
    server = Server(listeners, EnginePool(upstream), policy)
    await server.start()
    log.info("listening", sockets=listen_paths, upstream=upstream, policy=policy.name)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.shutdown(args.grace)
    log.info("stopped")
    audit.flush()
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the relay's cost is mostly event-loop overhead."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    audit.configure(args.log_format, args.log_level)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(args))
    except (AddressError, ListenError, PolicyError) as exc:
        print(f"sockproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
