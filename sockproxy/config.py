"""The configuration file (``sockproxy serve --config FILE``).

Declares the upstream, the listeners, the policies by name, and which
policy applies to whom (``docs/config.md``)::

    upstream: unix:///run/docker.sock       # optional: detected otherwise
    policies:
      default: /etc/sockproxy/default.yaml  # relative paths: to this file
      ci: ci-runner.yaml
    listeners:
      - name: local
        unix: /run/sockproxy/docker.sock
        mode: "0660"
        group: docker-users
        policy: default                     # for clients no identity rule picks
      - name: remote
        tcp: 0.0.0.0:2376
        tls: {cert: server.pem, key: server-key.pem, client-ca: ca.pem}
    identities:                             # first match wins
      - match: {group: ci}
        policy: ci
      - match: {subject: "CN=runner-*"}
        policy: ci
        tenant: runners                     # these clients share their objects

It is validated like a policy: every error names ``FILE:LINE:COL`` and a
configuration with any error is never used. Command-line flags build the
same ``Config`` for the single-listener case.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import yaml

from sockproxy.identity import Identity, group_name
from sockproxy.limits import Limits
from sockproxy.metrics import parse_address
from sockproxy.yamlfile import Errors, boolean, closest, compose, mapping, string, unknown

# A client whose connection no rule and no listener gives a policy to is
# answered 403 on every request, naming this rule.
NO_POLICY_RULE = "no-policy-for-client"


class ConfigError(Exception):
    """The configuration cannot be used; ``errors`` are ``FILE:LINE:COL: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class TLS:
    cert: str
    key: str
    client_ca: str  # client certificates must chain to this CA


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str
    kind: str  # "unix" | "tcp" | "systemd"
    address: str  # socket path, "host:port", or the systemd FileDescriptorName
    mode: int = 0o660
    group: str | None = None
    owner: str | None = None
    policy: str | None = None  # policy name for clients no identity rule selects
    tls: TLS | None = None
    plain_tcp: bool = False  # explicit opt-in to TCP without TLS (no identity at all)


@dataclass(frozen=True, slots=True)
class Match:
    """All given keys must match; a list matches any of its values."""

    uid: frozenset[int] = frozenset()
    user: frozenset[str] = frozenset()
    group: frozenset[str] = frozenset()
    process: tuple[str, ...] = ()  # globs over the process name
    subject: tuple[str, ...] = ()  # globs over the certificate subject
    listener: frozenset[str] = frozenset()

    def matches(self, who: Identity) -> bool:
        if self.listener and who.listener not in self.listener:
            return False
        if self.uid and (who.uid not in self.uid or who.subject):
            return False
        if self.user and (who.user not in self.user or who.subject):
            return False
        if self.group and not self._in_group(who):
            return False
        if self.process and not any(fnmatch.fnmatchcase(who.process, p) for p in self.process):
            return False
        return not self.subject or (
            bool(who.subject) and any(fnmatch.fnmatchcase(who.subject, s) for s in self.subject)
        )

    def _in_group(self, who: Identity) -> bool:
        if who.subject:
            return False
        names = set(who.groups)
        return any(g in names or (_number(g) and group_name(int(g)) in names) for g in self.group)


def _number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Selection:
    match: Match
    policy: str
    tenant: str = ""  # shared owner label for every client this rule matches


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[ListenerSpec, ...]
    policies: Mapping[str, str]  # name -> file
    identities: tuple[Selection, ...] = ()
    upstream: str | None = None
    metrics: str | None = None  # "tcp://HOST:PORT" or "unix:///PATH"
    nested_dir: str = "/run/sockproxy/nested"
    limits: Limits = field(default_factory=Limits)
    source: str | None = None  # the file; None when built from flags
    default_policy: str | None = None  # for every client nothing else selects (flags)

    def select(self, who: Identity) -> tuple[str | None, Identity]:
        """The policy name for a client, and its identity with the tenant set."""
        for rule in self.identities:
            if rule.match.matches(who):
                tenant = rule.tenant
                return rule.policy, (_with_tenant(who, tenant) if tenant else who)
        for listener in self.listeners:
            if listener.name == who.listener and listener.policy is not None:
                return listener.policy, who
        return self.default_policy, who


def _with_tenant(who: Identity, tenant: str) -> Identity:
    return replace(who, tenant=tenant)


# Resolves a policy name used in the file (and reports an unknown one).
_PolicyRef = Callable[[yaml.Node, str], str | None]

_TOP = {"upstream", "policies", "listeners", "identities", "metrics", "nested-sockets", "limits"}
_LISTENER = {"name", "unix", "tcp", "systemd", "mode", "group", "owner", "policy", "tls"}
_LISTENER_TCP = {"insecure-plain-tcp"}
_TLS = {"cert", "key", "client-ca"}
_MATCH = {"uid", "user", "group", "process", "subject", "listener"}
_LIMITS = {name.replace("_", "-") for name in Limits.__dataclass_fields__}


def load_config(path: str) -> Config:
    """Read and validate a configuration file."""
    errors = Errors(path, "configuration")
    file = Path(path)
    # Absolute, so that what the file names does not depend on the working
    # directory (nested socket paths are bound by the engine; reloads read
    # the file by its absolute path).
    base = Path(os.path.abspath(path)).parent
    root = compose(file, errors)
    if root is None:
        raise ConfigError(errors.items)
    top = mapping(root, errors, "configuration")
    unknown(top, _TOP, errors, "configuration")

    policies: dict[str, str] = {}
    if "policies" in top:
        for name, (_key, node) in mapping(top["policies"][1], errors, "policies").items():
            value = string(node, errors, f"policies.{name}")
            if value is not None:
                policies[name] = str(base / value)

    def policy_ref(node: yaml.Node, what: str) -> str | None:
        name = string(node, errors, what)
        if name is not None and name not in policies:
            errors.add(node, f"{what}: no policy named {name!r} under 'policies'")
        return name

    listeners: list[ListenerSpec] = []
    if "listeners" not in top:
        errors.add(root, "configuration: 'listeners' is required")
    else:
        node = top["listeners"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            errors.add(node, "listeners must be a non-empty list")
        else:
            for item in node.value:
                spec = _listener(item, errors, base, policy_ref)
                if spec is not None:
                    listeners.append(spec)
    names = [spec.name for spec in listeners]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.add(top["listeners"][1], f"listeners: the name {name!r} is used twice")

    identities: list[Selection] = []
    if "identities" in top:
        node = top["identities"][1]
        if not isinstance(node, yaml.SequenceNode):
            errors.add(node, "identities must be a list")
        else:
            known = {spec.name for spec in listeners}
            for item in node.value:
                rule = _selection(item, errors, policy_ref, known)
                if rule is not None:
                    identities.append(rule)

    upstream = metrics = None
    if "upstream" in top:
        upstream = string(top["upstream"][1], errors, "upstream")
    if "metrics" in top:
        metrics = string(top["metrics"][1], errors, "metrics")
        try:
            parse_address(metrics or "")
        except ValueError as exc:
            errors.add(top["metrics"][1], str(exc))
    nested_dir = "/run/sockproxy/nested"
    if "nested-sockets" in top:
        nested_dir = str(base / (string(top["nested-sockets"][1], errors, "nested-sockets") or ""))
    limits = Limits()
    if "limits" in top:
        limits = _limits(top["limits"][1], errors)
    if errors.items:
        raise ConfigError(errors.items)
    return Config(
        listeners=tuple(listeners),
        policies=MappingProxyType(policies),
        identities=tuple(identities),
        upstream=upstream,
        metrics=metrics,
        nested_dir=nested_dir,
        limits=limits,
        source=os.path.abspath(path),
    )


def _listener(
    node: yaml.Node, errors: Errors, base: Path, policy_ref: _PolicyRef
) -> ListenerSpec | None:
    entries = mapping(node, errors, "listener")
    before = len(errors.items)
    kinds = [k for k in ("unix", "tcp", "systemd") if k in entries]
    unknown(entries, _LISTENER | (_LISTENER_TCP if "tcp" in entries else set()), errors, "listener")
    if len(kinds) != 1:
        errors.add(node, "listener: give exactly one of unix, tcp or systemd")
        return None
    kind = kinds[0]
    address = string(entries[kind][1], errors, kind) or ""
    name = string(entries["name"][1], errors, "name") if "name" in entries else None
    if kind == "unix":
        address = str(base / address)
    mode = 0o660
    if "mode" in entries:
        text = string(entries["mode"][1], errors, 'mode (quoted, e.g. "0660")')
        try:
            mode = int(text or "", 8)
            if not 0 <= mode <= 0o777:
                raise ValueError
        except ValueError:
            errors.add(entries["mode"][1], 'mode must be an octal permission mode like "0660"')
    group = string(entries["group"][1], errors, "group") if "group" in entries else None
    owner = string(entries["owner"][1], errors, "owner") if "owner" in entries else None
    policy = policy_ref(entries["policy"][1], "policy") if "policy" in entries else None
    tls = None
    if "tls" in entries:
        if kind != "tcp":
            errors.add(entries["tls"][0], "tls: only a tcp listener takes tls")
        parts = mapping(entries["tls"][1], errors, "tls")
        unknown(parts, _TLS, errors, "tls")
        files = {}
        for key in sorted(_TLS):
            if key not in parts:
                errors.add(entries["tls"][1], f"tls: {key!r} is required")
            else:
                files[key] = str(base / (string(parts[key][1], errors, f"tls.{key}") or ""))
        if len(files) == len(_TLS):
            tls = TLS(files["cert"], files["key"], files["client-ca"])
    plain = False
    if "insecure-plain-tcp" in entries:
        plain = bool(boolean(entries["insecure-plain-tcp"][1], errors, "insecure-plain-tcp"))
    if kind == "tcp":
        _host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            errors.add(entries["tcp"][1], "tcp: give HOST:PORT")
        if tls is None and not plain:
            errors.add(
                entries["tcp"][0],
                "tcp: a TCP listener requires tls (client certificates);"
                " plain TCP needs 'insecure-plain-tcp: true'",
            )
    if kind == "tcp" and (group or owner):
        errors.add(node, "listener: owner and group apply to unix listeners only")
    if len(errors.items) != before:
        return None
    return ListenerSpec(
        name=name or address,
        kind=kind,
        address=address,
        mode=mode,
        group=group,
        owner=owner,
        policy=policy,
        tls=tls,
        plain_tcp=plain,
    )


def _selection(
    node: yaml.Node, errors: Errors, policy_ref: _PolicyRef, listeners: set[str]
) -> Selection | None:
    entries = mapping(node, errors, "identity")
    before = len(errors.items)
    unknown(entries, {"match", "policy", "tenant"}, errors, "identity")
    if "match" not in entries or "policy" not in entries:
        errors.add(node, "identity: 'match' and 'policy' are required")
        return None
    parts = mapping(entries["match"][1], errors, "match")
    unknown(parts, _MATCH, errors, "match")
    if not parts:
        errors.add(entries["match"][1], "match: give at least one of " + ", ".join(sorted(_MATCH)))
    values: dict[str, list[str]] = {}
    for key, (_, value) in parts.items():
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        if not items:  # an empty list would drop the key: the rule would match everyone
            errors.add(value, f"match.{key}: the list is empty")
        values[key] = []
        for item in items:
            # uid: 1000 and uid: [1000, 1001] alike; an empty value is a mistake
            if isinstance(item, yaml.ScalarNode) and item.tag != "tag:yaml.org,2002:null":
                values[key].append(str(item.value))
            else:
                errors.add(item, f"match.{key} must be a value or a list of values")
    uids: set[int] = set()
    for text in values.get("uid", []):
        if _number(text):
            uids.add(int(text))
        else:
            errors.add(parts["uid"][1], f"match.uid: {text!r} is not a number")
    for name in values.get("listener", []):
        if name not in listeners:
            hint = closest(name, listeners)
            errors.add(
                parts["listener"][1],
                f"match.listener: no listener named {name!r}"
                + (f" (did you mean {hint!r}?)" if hint else ""),
            )
    policy = policy_ref(entries["policy"][1], "policy")
    tenant = string(entries["tenant"][1], errors, "tenant") if "tenant" in entries else ""
    if len(errors.items) != before or policy is None:
        return None
    return Selection(
        Match(
            uid=frozenset(uids),
            user=frozenset(values.get("user", [])),
            group=frozenset(values.get("group", [])),
            process=tuple(values.get("process", [])),
            subject=tuple(values.get("subject", [])),
            listener=frozenset(values.get("listener", [])),
        ),
        policy,
        tenant or "",
    )


def _limits(node: yaml.Node, errors: Errors) -> Limits:
    entries = mapping(node, errors, "limits")
    unknown(entries, _LIMITS, errors, "limits")
    defaults = Limits()
    values = {}
    for key, (_, value) in entries.items():
        name = key.replace("-", "_")
        if name not in Limits.__dataclass_fields__:
            continue
        # A YAML number, never a string or a bool (int(True) is 1), and no
        # fraction where a count or size is meant (int(1.5) would be 1).
        tags = {"tag:yaml.org,2002:int"}
        if isinstance(getattr(defaults, name), float):
            tags.add("tag:yaml.org,2002:float")
        number: int | float | None = None
        if isinstance(value, yaml.ScalarNode) and value.tag in tags:
            number = yaml.safe_load(yaml.serialize(value))
        if isinstance(number, int | float) and 0 < number < float("inf"):
            values[name] = type(getattr(defaults, name))(number)
        else:
            kind = "a number" if len(tags) > 1 else "a whole number"
            errors.add(value, f"limits.{key} must be {kind} greater than 0")
    return Limits(**values)
