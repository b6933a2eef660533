"""Command line: ``sockproxy serve``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

import structlog

from sockproxy import activation, audit, service, suggest
from sockproxy.checks import Context
from sockproxy.config import Config, ConfigError, ListenerSpec, load_config
from sockproxy.errors import ProxyError
from sockproxy.limits import Limits
from sockproxy.listener import Listener, ListenError
from sockproxy.normalize import normalize
from sockproxy.policy import PolicyError, check_files, evaluate, load_policy
from sockproxy.regime import BUILTIN_PERMISSIVE, build_regime
from sockproxy.routes import classify
from sockproxy.schema import policy_schema
from sockproxy.upstream import AddressError, unix_path

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
        "--config",
        metavar="FILE",
        help="configuration file: listeners, identities, policies (docs/config.md)",
    )
    serve.add_argument(
        "--listen",
        action="append",
        metavar="unix:///PATH",
        help="socket to listen on (repeatable; not with --config)",
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
    serve.add_argument(
        "--nested-dir",
        default="/run/sockproxy/nested",
        metavar="DIR",
        help="where nested sockets are made (default /run/sockproxy/nested)",
    )
    serve.add_argument(
        "--metrics",
        metavar="ADDRESS",
        help="serve Prometheus metrics at tcp://HOST:PORT or unix:///PATH (default: off)",
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
    check = commands.add_parser("check", help="validate policy files (and a configuration)")
    check.add_argument("files", nargs="*", metavar="FILE")
    check.add_argument(
        "--config", metavar="FILE", help="also a configuration file and every policy it names"
    )
    explain = commands.add_parser("explain", help="show the decision a policy makes on a request")
    explain.add_argument("--policy", required=True, metavar="FILE")
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("path", metavar="PATH", help="request target: /v1.41/containers/create")
    explain.add_argument("body", nargs="?", metavar="BODY_FILE", help="request body ('-': stdin)")
    suggest.add_parser(commands)
    return parser


def config_from_args(args: argparse.Namespace, inherited: Sequence[Listener] = ()) -> Config:
    """The single-listener configuration the flags describe."""
    if args.config:
        given = [flag for flag in _FILE_ONLY if getattr(args, flag.lstrip("-").replace("-", "_"))]
        if given:
            raise ConfigError([f"--config: give {', '.join(given)} in the file instead"])
        config = load_config(args.config)
        return config
    if not args.listen and not inherited:
        raise ConfigError(["serve: give --listen unix:///PATH (or --config FILE)"])
    activated = tuple(
        ListenerSpec(name=item.name, kind="systemd", address=item.name) for item in inherited
    )
    listeners = activated + tuple(
        ListenerSpec(
            name=unix_path(url),
            kind="unix",
            address=unix_path(url),
            mode=args.socket_mode,
            group=args.socket_group,
        )
        for url in args.listen or ()
    )
    return Config(
        listeners=listeners,
        policies={"main": args.policy or BUILTIN_PERMISSIVE},
        default_policy="main",
        upstream=args.upstream,
        nested_dir=args.nested_dir,
        metrics=args.metrics,
        limits=Limits(**{field: getattr(args, field) for _, field, _, _ in _LIMIT_FLAGS}),
    )


# Flags that a configuration file replaces.
_FILE_ONLY = ("--listen", "--policy", "--upstream", "--socket-group", "--metrics")


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
    if args.config:
        try:
            build_regime(load_config(args.config), Context())
        except (ConfigError, PolicyError) as exc:
            errors.extend(exc.errors)
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
        if args.command == "suggest":
            return suggest.run(args)
        if args.command == "schema":
            print(json.dumps(policy_schema(), indent=2))
            return 0
        audit.configure(args.log_format, args.log_level)
        # Socket activation: the sockets systemd passed (LISTEN_FDS) are listeners.
        inherited = service.adopt(activation.inherited(os.environ))
        config = config_from_args(args, inherited)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(service.serve(config, args.grace, inherited))
    except (ConfigError, PolicyError) as exc:
        print("\n".join(f"sockproxy: {error}" for error in exc.errors), file=sys.stderr)
        return 2
    except (AddressError, ListenError, OSError, ValueError) as exc:
        print(f"sockproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
