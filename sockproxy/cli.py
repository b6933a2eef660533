"""Command line: ``sockproxy serve``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

import structlog

from sockproxy import audit
from sockproxy.checks import Context
from sockproxy.engine import EnginePool
from sockproxy.errors import ProxyError
from sockproxy.limits import Limits
from sockproxy.listener import ListenError, open_listener, remove_listener
from sockproxy.normalize import normalize
from sockproxy.policy import PERMISSIVE, PolicyError, check_files, evaluate, load_policy
from sockproxy.routes import classify
from sockproxy.schema import policy_schema
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


# serve's limit flags: (flag, Limits field, metavar, help).
_LIMIT_FLAGS = (
    ("--max-head-bytes", "head_bytes", "N", "largest request head"),
    ("--max-body-bytes", "body_bytes", "N", "largest body read for inspection"),
    ("--head-timeout", "head_timeout", "SECONDS", "time to send a request head"),
    ("--idle-timeout", "idle_timeout", "SECONDS", "idle keep-alive time"),
    ("--max-connections", "max_connections", "N", "open client connections"),
    (
        "--max-connections-per-uid",
        "max_connections_per_uid",
        "N",
        "open connections per client uid",
    ),
)


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
    commands.add_parser("schema", help="print the JSON Schema of policy files")
    defaults = Limits()
    for flag, field, metavar, text in _LIMIT_FLAGS:
        default = getattr(defaults, field)
        serve.add_argument(
            flag,
            dest=field,
            type=type(default),
            default=default,
            metavar=metavar,
            help=f"{text} (default {default})",
        )
    check = commands.add_parser("check", help="validate policy files")
    check.add_argument("files", nargs="+", metavar="FILE")
    explain = commands.add_parser("explain", help="show the decision a policy makes on a request")
    explain.add_argument("--policy", required=True, metavar="FILE")
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("path", metavar="PATH", help="request target: /v1.41/containers/create")
    explain.add_argument("body", nargs="?", metavar="BODY_FILE", help="request body ('-': stdin)")
    return parser


async def serve(args: argparse.Namespace) -> int:
    listen_paths = [unix_path(url) for url in args.listen]
    upstream = (
        unix_path(args.upstream) if args.upstream else detect_upstream(os.environ, listen_paths)
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
    if args.policy:
        # The engine's kind refines decisions where the engines differ (an
        # unknown engine gets the stricter reading).
        context = Context(own_sockets=(*listen_paths, upstream), engine=kind)
        policy = load_policy(args.policy, context)
    else:
        policy = PERMISSIVE
        log.warning("no --policy given: every recognised request is allowed")
    listeners = []
    try:
        for path in listen_paths:
            listeners.append(open_listener(path, mode=args.socket_mode, group=args.socket_group))
    except ListenError:
        for listener in listeners:
            remove_listener(listener)
        raise
    limits = Limits(**{field: getattr(args, field) for _, field, _, _ in _LIMIT_FLAGS})
    server = Server(listeners, EnginePool(upstream), policy, limits)
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


def check(args: argparse.Namespace) -> int:
    """``sockproxy check``: exit 0, or 1 with FILE:LINE:COL: message lines."""
    errors = list(check_files(args.files))
    for error in errors:
        print(error)
    return 1 if errors else 0


def explain(args: argparse.Namespace) -> int:
    """``sockproxy explain``: the decision, the rule and the fields looked at."""
    policy = load_policy(args.policy)
    body: bytes | None = None
    if args.body == "-":
        body = sys.stdin.buffer.read()
    elif args.body:
        body = Path(args.body).read_bytes()
    route = classify(args.method.upper(), args.path)
    print(f"operation: {route.operation} (section {route.section}, {route.api.value} API)")
    try:
        request = normalize(route.operation, route.section, route.body, route.query, body)
    except ProxyError as exc:
        print(f"decision: deny ({exc.status})\nreason: {exc.message}")
        return 0
    decision = evaluate(policy, request)
    print(f"decision: {'allow' if decision.allowed else 'deny'}")
    if decision.rule:
        print(f"rule: {decision.rule}")
        print(f"reason: {decision.reason}")
    for warning in decision.warnings:
        print(f"warning: {warning.rule}: {warning.violation}")
    print("normalised:")
    for line in describe(request):
        print(f"  {line}")
    return 0


def describe(value: object, prefix: str = "") -> list[str]:
    """The non-empty fields of a normalised request, one per line."""
    lines: list[str] = []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            lines += describe(getattr(value, item.name), f"{prefix}{item.name}")
        return [line if prefix else line.lstrip(".") for line in lines]
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        for index, element in enumerate(value):
            lines += describe(element, f"{prefix}[{index}].")
        return lines
    if isinstance(value, Enum):
        value = value.value
    if value not in (None, "", (), False):
        lines.append(f"{prefix.rstrip('.')}: {value}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return check(args)
        if args.command == "explain":
            return explain(args)
        if args.command == "schema":
            print(json.dumps(policy_schema(), indent=2))
            return 0
        audit.configure(args.log_format, args.log_level)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(args))
    except (AddressError, ListenError, PolicyError, OSError) as exc:
        print(f"sockproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
