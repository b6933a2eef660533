"""Decide stage: policy files, and ``evaluate(policy, request) -> Decision``.

A policy is data an admin edits (``docs/policy.md``):

    name: ci
    extends: default.yaml          # optional; relative to this file
    allow:
      sections: [system, container, exec, image, volume, network, build]
      operations: [plugin.list]    # single operations on top of the sections
    deny:
      operations: [container.export]
    checks:
      - id: no-privileged          # stable rule id, shown in refusals
        check: privileged          # a check kind from checks.py
        mode: enforce              # enforce | warn (allow and log) | off
        message: privileged containers are not allowed here

Loading validates every key against the check registry; an error names
FILE:LINE:COL, and a policy with any error is never used (never fail open).
``evaluate`` is pure and never raises; unknown endpoints and operations
outside the allowed set are refused before any check runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from sockproxy.checks import REGISTRY, Context, Violation
from sockproxy.model import Request
from sockproxy.routes import ENDPOINTS, SECTIONS
from sockproxy.yamlfile import (
    Errors,
    boolean,
    closest,
    compose,
    mapping,
    string,
    strings,
    unknown,
    word,
)

OPERATIONS = frozenset(endpoint.operation for endpoint in ENDPOINTS)


class PolicyError(Exception):
    """A policy file cannot be used; ``errors`` are ``FILE:LINE:COL: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Mode(Enum):
    ENFORCE = "enforce"
    WARN = "warn"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    check: str
    mode: Mode
    message: str
    params: MappingProxyType[str, Any]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str | None  # the file it came from; None when built in
    digest: str  # sha256 of the files it was built from, for the audit trail
    sections: frozenset[str]  # "*" allows every section
    allow_operations: frozenset[str]
    deny_operations: frozenset[str]
    rules: tuple[Rule, ...]
    context: Context = field(default_factory=Context)
    # Ownership isolation: clients see and touch only what they created.
    isolation: bool = False
    # Engine-socket binds are rewritten to a sockproxy socket carrying the
    # client's identity and this policy ("same") or the one in this file.
    nested_policy: str | None = None
    files: tuple[str, ...] = ()  # every file it was built from (extends too), to watch

    def allows_operation(self, operation: str, section: str) -> bool:
        if operation in self.deny_operations:
            return False
        return (
            "*" in self.sections or section in self.sections or (operation in self.allow_operations)
        )


@dataclass(frozen=True, slots=True)
class Warning_:
    """A violation of a rule in warn mode: allowed, and audited."""

    rule: str
    violation: str
    check: str = ""  # the rule's check kind
    param: str = ""  # the parameter that could allow it, and the value (see Violation)
    subject: str = ""

    def audit_fields(self) -> dict[str, str]:
        fields = {"rule": self.rule, "check": self.check, "violation": self.violation}
        if self.param:
            fields.update(param=self.param, subject=self.subject)
        return fields


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str | None  # the rule that refused, or None
    reason: str  # for a refusal: the message the client sees
    hijack: bool  # the connection may be handed over to a raw stream
    warnings: tuple[Warning_, ...] = ()


PERMISSIVE = Policy(
    name="builtin-permissive",
    source=None,
    digest="",
    sections=frozenset({"*"}),
    allow_operations=frozenset(),
    deny_operations=frozenset(),
    rules=(),
)

UNKNOWN_RULE = "endpoint-not-recognised"
OPERATION_RULE = "operation-not-allowed"


def evaluate(policy: Policy, request: Request) -> Decision:
    """Decide on one normalised request. Pure; default deny for the unknown."""
    if request.operation == "unknown":
        return _refuse(policy, UNKNOWN_RULE, "endpoint not recognised")
    if not policy.allows_operation(request.operation, request.section):
        return _refuse(policy, OPERATION_RULE, f"operation {request.operation} is not allowed")
    if not request.has_specs:
        return _ALLOW
    warnings: list[Warning_] = []
    for rule in policy.rules:
        if rule.mode is Mode.OFF:
            continue
        checked = REGISTRY[rule.check].fn(rule.params, request, policy.context)
        try:
            first = next(checked, None)
            if first is not None and rule.mode is Mode.WARN:
                warnings += _warnings(rule, first, checked)
                continue
            violation = first.text if first is not None else None
        except Exception as exc:  # a failing check must refuse, never allow
            violation = f"check {rule.check} failed: {type(exc).__name__}"
            if rule.mode is Mode.WARN:
                violation += " (refused although in warn mode)"
                return _refuse(policy, rule.id, violation)
        if violation is None:
            continue
        text = f"{rule.message}: {violation}" if rule.message else violation
        return _refuse(policy, rule.id, text)
    return Decision(True, None, "allowed", True, tuple(warnings))


WARNINGS_PER_RULE = 32  # bounds one audit line; a request past it is hostile, not learnt


def _warnings(rule: Rule, first: Violation, rest: Iterator[Violation]) -> list[Warning_]:
    """Every violation of a rule in warn mode (learning: `sockproxy suggest`
    names each one in the policy it writes), where enforcing needs only the first."""
    found = [first]
    for violation in rest:
        if len(found) == WARNINGS_PER_RULE:
            break
        found.append(violation)
    return [Warning_(rule.id, v.text, rule.check, v.param, v.subject) for v in found]


_ALLOW = Decision(True, None, "allowed", True)


def _refuse(policy: Policy, rule: str, what: str) -> Decision:
    return Decision(False, rule, f"sockproxy: {what} (rule {rule}, policy {policy.name})", False)


# -- loading ---------------------------------------------------------------------

_TOP_KEYS = {
    "name",
    "description",
    "extends",
    "allow",
    "deny",
    "checks",
    "all-checks",
    "isolation",
    "nested-socket",
}
SAME = "same"  # nested-socket: the nested socket applies this same policy
_RULE_KEYS = {"id", "check", "mode", "message"}


def _names(node: yaml.Node, errors: Errors, what: str, known: Iterable[str]) -> list[str]:
    """A list of section or operation names, each one the catalogue knows."""
    names = strings(node, errors, what)
    if isinstance(node, yaml.SequenceNode):
        known = set(known)
        for item, name in zip(node.value, names, strict=False):
            if name not in known:
                hint = closest(name, known)
                errors.add(
                    item,
                    f"{what}: unknown name {name!r}"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                )
    return names


@dataclass
class _Draft:
    """A policy as read from one file, before ``extends`` is applied."""

    name: str | None = None
    extends: str | None = None
    sections: list[str] | None = None
    allow_operations: list[str] | None = None
    deny_operations: list[str] | None = None
    rules: list[Rule] = field(default_factory=list)
    all_checks: Mode | None = None  # applied to every rule, inherited ones too
    isolation: bool | None = None
    nested_policy: str | None = None


def _read(path: Path, errors: Errors) -> _Draft:
    draft = _Draft()
    root = compose(path, errors)
    if root is None:
        return draft
    top = mapping(root, errors, "policy")
    unknown(top, _TOP_KEYS, errors, "policy")
    if "name" in top:
        draft.name = string(top["name"][1], errors, "name")
    if "description" in top:
        string(top["description"][1], errors, "description")
    if "extends" in top:
        draft.extends = string(top["extends"][1], errors, "extends")
    for part in ("allow", "deny"):
        if part not in top:
            continue
        entries = mapping(top[part][1], errors, part)
        unknown(
            entries, {"sections", "operations"} if part == "allow" else {"operations"}, errors, part
        )
        if "sections" in entries:
            draft.sections = _names(
                entries["sections"][1], errors, "allow.sections", set(SECTIONS) | {"*"}
            )
        if "operations" in entries:
            ops = _names(entries["operations"][1], errors, f"{part}.operations", OPERATIONS)
            if part == "allow":
                draft.allow_operations = ops
            else:
                draft.deny_operations = ops
    if "all-checks" in top:
        text = word(top["all-checks"][1], errors, "all-checks")
        try:
            draft.all_checks = Mode(text) if text is not None else None
        except ValueError:
            errors.add(top["all-checks"][1], "all-checks must be enforce, warn or off")
    if "isolation" in top:
        draft.isolation = boolean(top["isolation"][1], errors, "isolation")
    if "nested-socket" in top:
        nested = string(top["nested-socket"][1], errors, "nested-socket")
        if nested is not None and nested != SAME:
            nested = str((path.parent / nested).absolute())
        draft.nested_policy = nested
    if "checks" in top:
        node = top["checks"][1]
        if not isinstance(node, yaml.SequenceNode):
            errors.add(node, "checks must be a list")
        else:
            draft.rules = [r for item in node.value if (r := _rule(item, errors)) is not None]
    return draft


def _rule(node: yaml.Node, errors: Errors) -> Rule | None:
    entries = mapping(node, errors, "check")
    before = len(errors.items)
    rule_id = string(entries["id"][1], errors, "id") if "id" in entries else None
    kind_name = string(entries["check"][1], errors, "check") if "check" in entries else None
    if rule_id is None and "id" not in entries:
        errors.add(node, "check: missing 'id'")
    if kind_name is None and "check" not in entries:
        errors.add(node, "check: missing 'check' (the kind of check)")
    kind = REGISTRY.get(kind_name or "")
    if kind_name is not None and kind is None:
        hint = closest(kind_name, set(REGISTRY))
        errors.add(
            entries["check"][1],
            f"unknown check kind {kind_name!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
        )
    param_keys = {name.replace("_", "-") for name in kind.params} if kind else set()
    unknown(
        entries,
        _RULE_KEYS | param_keys if kind else _RULE_KEYS | set(entries),
        errors,
        f"check {rule_id or ''}".strip(),
    )
    mode = Mode.ENFORCE
    if "mode" in entries:
        text = word(entries["mode"][1], errors, "mode")
        if text is not None:
            try:
                mode = Mode(text)
            except ValueError:
                errors.add(entries["mode"][1], "mode must be enforce, warn or off")
    message = ""
    if "message" in entries:
        message = string(entries["message"][1], errors, "message") or ""
    params: dict[str, Any] = {}
    if kind is not None:
        for name, param in kind.params.items():
            key = name.replace("_", "-")
            if key not in entries:
                params[name] = param.default
            elif param.kind == "bool":
                params[name] = boolean(entries[key][1], errors, key)
            else:
                params[name] = tuple(strings(entries[key][1], errors, key))
    if len(errors.items) != before or rule_id is None or kind is None:
        return None
    return Rule(rule_id, kind.name, mode, message, MappingProxyType(params))


def _merge(base: _Draft, child: _Draft) -> _Draft:
    """``extends``: the child's lists replace the base's; rules merge by id."""
    rules = {rule.id: rule for rule in base.rules}
    for rule in child.rules:
        rules[rule.id] = rule
    return _Draft(
        name=child.name or base.name,
        sections=child.sections if child.sections is not None else base.sections,
        allow_operations=(
            child.allow_operations if child.allow_operations is not None else base.allow_operations
        ),
        deny_operations=(
            child.deny_operations if child.deny_operations is not None else base.deny_operations
        ),
        rules=list(rules.values()),
        all_checks=child.all_checks,
        isolation=child.isolation if child.isolation is not None else base.isolation,
        nested_policy=child.nested_policy or base.nested_policy,
    )


def _load_draft(path: Path, errors: list[str], seen: list[Path], digest: Any) -> _Draft:
    resolved = path.resolve()
    file_errors = Errors(str(path))
    if resolved in seen:
        file_errors.add(None, "extends loops back to " + str(path))
        errors.extend(file_errors.items)
        return _Draft()
    seen.append(resolved)
    draft = _read(path, file_errors)
    errors.extend(file_errors.items)
    with contextlib.suppress(OSError):
        digest.update(path.read_bytes())
    ids = [rule.id for rule in draft.rules]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        errors.append(f"{path}:1:1: rule id {duplicate!r} is used twice")
    if draft.extends is not None:
        base = _load_draft(path.parent / draft.extends, errors, seen, digest)
        draft = _merge(base, draft)
    if draft.all_checks is not None:
        mode = draft.all_checks
        draft.rules = [Rule(r.id, r.check, mode, r.message, r.params) for r in draft.rules]
    return draft


def load_policy(path: str, context: Context | None = None) -> Policy:
    """Load and validate a policy file (and what it extends)."""
    errors: list[str] = []
    digest = hashlib.sha256()
    files: list[Path] = []
    draft = _load_draft(Path(path), errors, files, digest)
    if errors:
        raise PolicyError(errors)
    return Policy(
        name=draft.name or Path(path).stem,
        source=os.path.abspath(path),
        digest=digest.hexdigest()[:16],
        sections=frozenset(draft.sections or ()),
        allow_operations=frozenset(draft.allow_operations or ()),
        deny_operations=frozenset(draft.deny_operations or ()),
        rules=tuple(draft.rules),
        context=context or Context(),
        isolation=bool(draft.isolation),
        nested_policy=draft.nested_policy,
        files=tuple(str(f) for f in files),
    )


def check_files(paths: list[str]) -> Iterator[str]:
    """Every error in the given policy files (``sockproxy check``)."""
    for path in paths:
        try:
            load_policy(path)
        except PolicyError as exc:
            yield from exc.errors
