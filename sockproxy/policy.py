"""Decide stage: ``evaluate(policy, request) -> Decision``; pure, never raises.

Until the policy engine lands this module knows one policy, the permissive
built-in one. A policy file is accepted only when it asks for nothing more
than that: a file that states rules this version cannot enforce is refused
at start-up rather than silently ignored (never fail open).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from sockproxy.framing import RequestHead
from sockproxy.routes import Route


class PolicyError(Exception):
    """A policy file cannot be used; fatal at start-up."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str | None  # the rule that decided, None for the default
    reason: str
    hijack: bool  # the connection may be handed over to a raw stream


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str | None  # the file it came from, None when built in


PERMISSIVE = Policy(name="builtin-permissive", source=None)
_ALLOW = Decision(
    allowed=True, rule=None, reason="allowed by the built-in permissive policy", hijack=True
)
_SUPPORTED_KEYS = {"name", "description"}


def load_policy(path: str) -> Policy:
    """Read a policy file; raise PolicyError for anything it cannot honour."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a policy must be a YAML mapping")
    unknown = sorted(str(key) for key in data if key not in _SUPPORTED_KEYS)
    if unknown:
        raise PolicyError(
            f"{path}: this version of sockproxy cannot enforce {', '.join(unknown)}; "
            "refusing to start rather than ignore them"
        )
    name = data.get("name", Path(path).stem)
    return Policy(name=str(name), source=path)


def evaluate(policy: Policy, route: Route, head: RequestHead) -> Decision:
    """Decide on one request. Every request is allowed by the permissive policy."""
    return _ALLOW
