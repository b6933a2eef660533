"""``sockproxy suggest``: the smallest policy that allows what an audit log saw.

Learning mode (docs/learning.md): serve a tool with policies/permissive.yaml
(every operation allowed, every check of default.yaml in warn mode), then read
the audit log here. The policy written allows exactly the operations that were
allowed in the log (operations, never sections), and keeps every check of a
base policy, relaxing only the rules that warned, each as narrowly as its
parameters can say: the capability, device, sysctl, runtime, security option
or bind source seen is added to the rule's allow list (``exact`` for binds);
where the parameter is a deny list, the matching entry is dropped (broader
than what was seen: the summary says so); where no parameter can name what
was seen, the rule is turned off, with a comment listing what was seen.
Requests the log shows refused stay refused, and are listed.

Reading the log: one JSON object per line. A line that doesn't start with
``{`` is not an audit line (console-format output, a traceback, a journald
prefix): skipped and counted. A line that starts with ``{`` but isn't a JSON
object is an error naming the file and line: a truncated or corrupted audit
trail must not silently lose requests. JSON objects other than request events
(``"event": "request"``) are sockproxy's other log lines: skipped. Unknown
fields are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import yaml

from sockproxy.checks import REGISTRY
from sockproxy.policy import Mode, Policy, PolicyError, Rule, Warning_, load_policy
from sockproxy.routes import ENDPOINTS

DEFAULT_BASE = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"
SECTION_OF = {endpoint.operation: endpoint.section for endpoint in ENDPOINTS}


class AuditError(Exception):
    """The audit log can't be read: ``FILE:LINE: message``."""


# -- reading the audit trail ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One audited request, as far as learning needs it."""

    operation: str
    method: str
    allowed: bool
    rule: str  # the rule that refused; "" when allowed
    timestamp: str
    warnings: tuple[Warning_, ...]
    caller: Mapping[str, object]  # the identity fields (uid, user, process, listener...)


# Identity fields an event may carry (the lead's identity audit fields and the
# older uid/pid), kept for filters and the header.
_CALLER_FIELDS = ("listener", "uid", "gid", "user", "process", "subject", "tenant")


@dataclass
class Reading:
    events: list[Event] = field(default_factory=list)
    other_events: int = 0  # sockproxy's own log lines (listening, engine...)
    not_json: int = 0  # lines that are not audit lines at all


def parse(lines: Iterable[str], name: str, reading: Reading) -> None:
    """Add the audit events of one log to ``reading``; AuditError on a bad line."""
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("{"):
            reading.not_json += 1
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{name}:{number}: not a JSON audit line ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise AuditError(f"{name}:{number}: not a JSON object")
        if entry.get("event") != "request":
            reading.other_events += 1
            continue
        reading.events.append(_event(entry, f"{name}:{number}"))


def _event(entry: dict[str, Any], where: str) -> Event:
    operation, decision = entry.get("operation"), entry.get("decision")
    if not isinstance(operation, str) or decision not in ("allow", "deny"):
        raise AuditError(f"{where}: a request event without operation or decision")
    warnings = entry.get("warnings") or []
    if not isinstance(warnings, list):
        raise AuditError(f"{where}: warnings is not a list")
    return Event(
        operation=operation,
        method=str(entry.get("method", "")),
        allowed=decision == "allow",
        rule=str(entry.get("rule") or ""),
        timestamp=str(entry.get("timestamp", "")),
        warnings=tuple(_warning(item, where) for item in warnings),
        caller={key: entry[key] for key in _CALLER_FIELDS if key in entry},
    )


def _warning(item: object, where: str) -> Warning_:
    if isinstance(item, str):  # sockproxy before structured warnings: "rule: text"
        rule, _, text = item.partition(": ")
        return Warning_(rule, text)
    if isinstance(item, dict) and isinstance(item.get("rule"), str):
        return Warning_(
            item["rule"],
            str(item.get("violation", "")),
            str(item.get("check", "")),
            str(item.get("param", "")),
            str(item.get("subject", "")),
        )
    raise AuditError(f"{where}: a warning that is neither text nor an object with a rule")


def read(paths: Sequence[str], stdin: TextIO) -> Reading:
    """Every audit event of the given logs, in order ('-' reads stdin)."""
    reading = Reading()
    for path in paths:
        if path == "-":
            parse(stdin, "<stdin>", reading)
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as lines:
                parse(lines, path, reading)
        except OSError as exc:
            raise AuditError(f"{path}: {exc.strerror}") from None
    return reading


@dataclass(frozen=True, slots=True)
class Filter:
    """Which callers and which time span to learn from (empty: all)."""

    uids: frozenset[int] = frozenset()
    users: frozenset[str] = frozenset()
    processes: frozenset[str] = frozenset()
    listeners: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, event: Event) -> bool:
        who = event.caller
        for wanted, key in (
            (self.uids, "uid"),
            (self.users, "user"),
            (self.processes, "process"),
            (self.listeners, "listener"),
        ):
            if wanted and who.get(key) not in wanted:
                return False
        if self.since is None and self.until is None:
            return True
        try:
            at = parse_time(event.timestamp)
        except ValueError:
            return False  # a time span was asked for and this event has none
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)


def parse_time(text: str) -> datetime:
    """ISO 8601 (the audit's ``2024-06-01T10:00:00.123456Z``, or a date); UTC if unzoned."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# -- relaxing rules --------------------------------------------------------------------


class How(Enum):
    ADD = "add"  # the subject joins an allow list, as it is
    ADD_LITERAL = "add-literal"  # the same, escaped, where the list holds glob patterns
    DROP = "drop"  # the subject is the deny entry that matched: it goes
    SET = "set"  # a boolean parameter takes the subject's value


# How each (check kind, parameter) named by a Violation widens. A pair not
# here (a newer sockproxy's log, or a check with no parameter) turns the rule
# off, which is never narrower than any of these.
STRATEGIES: dict[tuple[str, str], How] = {
    ("capabilities", "allow"): How.ADD,
    ("runtime", "allow"): How.ADD,
    ("devices", "allow"): How.ADD,
    ("bind-mounts", "exact"): How.ADD,
    ("security-options", "allow"): How.ADD_LITERAL,
    ("sysctls", "allow"): How.ADD_LITERAL,
    ("bind-mounts", "deny"): How.DROP,
    ("oci-annotations", "deny"): How.DROP,
    ("mount-options", "deny"): How.DROP,
    ("host-namespaces", "kinds"): How.DROP,
    ("host-namespaces", "allow-join"): How.SET,
}


def literal_glob(value: str) -> str:
    """A glob pattern matching exactly ``value`` (fnmatch's brackets)."""
    return re.sub(r"([*?\[])", r"[\1]", value)


@dataclass
class Need:
    """The requests that needed one relaxation."""

    events: set[int] = field(default_factory=set)
    operations: Counter[str] = field(default_factory=Counter)
    example: str = ""  # one violation text, for the comment

    def add(self, index: int, event: Event, warning: Warning_) -> None:
        if index not in self.events:
            self.events.add(index)
            self.operations[event.operation] += 1
        self.example = self.example or warning.violation

    def describe(self) -> str:
        n = len(self.events)
        return f"{n} request{'s' if n != 1 else ''}: {', '.join(sorted(self.operations))}"


@dataclass
class Relaxed:
    """One base rule and what the log needed of it."""

    rule: Rule
    params: dict[str, Any]  # parameter (policy spelling) -> value, relaxed
    added: dict[tuple[str, str], Need] = field(default_factory=dict)  # (param, value)
    dropped: dict[tuple[str, str], Need] = field(default_factory=dict)
    set: dict[tuple[str, str], Need] = field(default_factory=dict)
    unnamed: dict[str, Need] = field(default_factory=dict)  # violation text -> need

    @property
    def off(self) -> bool:
        return bool(self.unnamed)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped or self.set or self.unnamed)

    def relax(self, index: int, event: Event, warning: Warning_) -> None:
        param, value = warning.param, warning.subject
        how = STRATEGIES.get((self.rule.check, param)) if param else None
        if how is None:
            self.unnamed.setdefault(_one_line(warning.violation), Need()).add(index, event, warning)
            return
        current = self.params[param]
        if how is How.SET:
            self.params[param] = value == "true"
            needs = self.set
        elif how is How.DROP:
            if value in current:
                self.params[param] = [v for v in current if v != value]
            elif (param, value) not in self.dropped:
                return  # not an entry of the base's list (the log came from another policy)
            needs = self.dropped
        else:
            value = literal_glob(value) if how is How.ADD_LITERAL else value
            if value not in current:
                self.params[param] = [*current, value]
            elif (param, value) not in self.added:
                return  # the base allows it already (the log came from another policy)
            needs = self.added
        needs.setdefault((param, value), Need()).add(index, event, warning)


def _params(rule: Rule) -> dict[str, Any]:
    return {
        name.replace("_", "-"): (list(value) if isinstance(value, tuple | list) else value)
        for name, value in rule.params.items()
    }


# -- the suggestion --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggestion:
    policy: str  # the YAML text
    summary: tuple[str, ...]  # for stderr


def suggest(
    events: Sequence[Event],
    base: Policy,
    *,
    base_label: str,
    name: str = "learned",
    logs: Sequence[str] = (),
) -> Suggestion:
    """The smallest policy allowing the allowed requests of ``events``, from ``base``'s checks."""
    operations: dict[str, Counter[str]] = {}  # operation -> methods seen
    refused: Counter[tuple[str, str]] = Counter()
    uncatalogued: Counter[str] = Counter()
    relaxed = {rule.id: Relaxed(rule, _params(rule)) for rule in base.rules}
    unmatched: Counter[str] = Counter()
    for index, event in enumerate(events):
        if not event.allowed:
            refused[(event.operation, event.rule)] += 1
            continue
        if event.operation not in SECTION_OF:
            uncatalogued[event.operation] += 1
            continue
        operations.setdefault(event.operation, Counter())[event.method] += 1
        for warning in event.warnings:
            targets = _targets(base, warning)
            if not targets:
                unmatched[warning.rule] += 1
            for rule in targets:
                relaxed[rule.id].relax(index, event, warning)

    writer = _Writer()
    _header(writer, events, base_label, logs)
    changed = [r for r in relaxed.values() if r.changed]
    writer.line(f"name: {_scalar(name)}")
    writer.line(
        "description: "
        + _scalar(
            f"Learned by sockproxy suggest from {len(events)} audited requests:"
            f" {len(operations)} operations; the checks of {base.name},"
            f" {sum(not r.off for r in changed)} relaxed, {sum(r.off for r in changed)} off."
        )
    )
    if base.isolation:
        writer.line(f"isolation: true  # as in {base.name}")
    if base.nested_policy is not None:
        writer.line(f"nested-socket: {_scalar(base.nested_policy)}  # as in {base.name}")
    _operations(writer, operations, base)
    writer.line("checks:")
    for rule in base.rules:
        _rule(writer, relaxed[rule.id])
    summary = _summary(
        events, operations, base, changed, refused, uncatalogued, unmatched, name=name
    )
    return Suggestion(writer.text(), tuple(summary))


def _targets(base: Policy, warning: Warning_) -> list[Rule]:
    """The base rules a warning is about: by id, else by check kind; enforcing ones only
    (a base rule in warn or off mode already allows what it saw)."""
    rules = [r for r in base.rules if r.id == warning.rule]
    if not rules and warning.check:
        rules = [r for r in base.rules if r.check == warning.check]
    return [r for r in rules if r.mode is Mode.ENFORCE]


def _header(writer: _Writer, events: Sequence[Event], base_label: str, logs: Sequence[str]) -> None:
    stamps = sorted(e.timestamp for e in events if e.timestamp)
    span = f" from {stamps[0]} to {stamps[-1]}" if stamps else ""
    writer.comment(f"Written by `sockproxy suggest` from {', '.join(logs) or 'an audit log'}:")
    writer.comment(f"{len(events)} audited requests{span}.")
    callers = Counter(_caller(e.caller) for e in events)
    if any(callers):
        shown = ", ".join(f"{who} ({n})" for who, n in callers.most_common(5) if who)
        writer.comment(f"Callers: {shown}{', ...' if len(callers) > 5 else ''}")
    writer.comment(f"Checks: those of {base_label}, relaxed only where a request needed it.")
    writer.comment("Review every relaxed or disabled rule, then: sockproxy check FILE")


def _caller(who: Mapping[str, object]) -> str:
    if "subject" in who:
        return f"cert {who['subject']}"
    parts = [
        f"{key}={who[key]}" for key in ("listener", "user", "uid", "process") if who.get(key, "")
    ]
    return " ".join(parts)


def _operations(writer: _Writer, operations: Mapping[str, Counter[str]], base: Policy) -> None:
    writer.line("allow:")
    writer.comment("Exactly the operations allowed in the log. Never sections: a section", 2)
    writer.comment("would allow its operations that were not seen.", 2)
    if not operations:
        writer.line("  operations: []")
        return
    writer.line("  operations:")
    for operation in sorted(operations, key=lambda o: (SECTION_OF[o], o)):
        methods = operations[operation]
        n = sum(methods.values())
        note = f"{n} request{'s' if n != 1 else ''} ({', '.join(sorted(methods))})"
        if not base.allows_operation(operation, SECTION_OF[operation]):
            note += f"; {base.name} refuses it"
        writer.item(operation, note, 4)


def _rule(writer: _Writer, relaxed: Relaxed) -> None:
    rule = relaxed.rule
    writer.line(f"  - id: {_scalar(rule.id)}")
    writer.line(f"    check: {_scalar(rule.check)}")
    if relaxed.off:
        writer.comment("OFF: no parameter of this check can allow only what the log saw:", 4)
        for text, need in sorted(relaxed.unnamed.items())[:8]:
            writer.comment(f"  {text} ({need.describe()})", 4)
        if len(relaxed.unnamed) > 8:
            writer.comment(f"  ... and {len(relaxed.unnamed) - 8} more", 4)
        writer.line("    mode: off")
    elif rule.mode is not Mode.ENFORCE:
        writer.line(f"    mode: {rule.mode.value}")
    if rule.message:
        writer.line(f"    message: {_scalar(rule.message)}")
    # An off rule keeps the base's parameters, for whoever turns it back on.
    params = _params(rule) if relaxed.off else relaxed.params
    notes = {} if relaxed.off else {**relaxed.added, **relaxed.set}
    dropped = {} if relaxed.off else relaxed.dropped
    for name, param in REGISTRY[rule.check].params.items():
        key = name.replace("_", "-")
        value = params[key]
        default = param.default if param.kind == "bool" else list(param.default)
        touched = any(k == key for k, _ in (*notes, *dropped))
        if value == default and not touched:
            continue
        for (k, entry), need in dropped.items():
            if k == key:
                writer.comment(f"dropped {entry}: allows more than was seen, see the summary", 4)
                writer.comment(f"  ({need.describe()}; {need.example})", 4)
        if param.kind == "bool":
            text = "true" if value else "false"
            set_by = notes.get((key, text))
            tail = f"  # relaxed for {set_by.describe()}" if set_by else ""
            writer.line(f"    {key}: {text}{_one_line(tail)}")
        elif not any(k == key for k, _ in notes):
            writer.flow(key, value, 4)
        else:
            writer.line(f"    {key}:")
            for item in value:
                added = notes.get((key, item))
                writer.item(item, f"added for {added.describe()}" if added else "", 6)


def _summary(
    events: Sequence[Event],
    operations: Mapping[str, Counter[str]],
    base: Policy,
    changed: Sequence[Relaxed],
    refused: Counter[tuple[str, str]],
    uncatalogued: Counter[str],
    unmatched: Counter[str],
    *,
    name: str,
) -> list[str]:
    lines = [f"{len(events)} audited requests; policy {name!r}:"]
    listed = ", ".join(f"{o} ({sum(m.values())})" for o, m in sorted(operations.items()))
    lines.append(f"  operations allowed ({len(operations)}): {listed or 'none'}")
    denied_by_base = [o for o in operations if not base.allows_operation(o, SECTION_OF[o])]
    if denied_by_base:
        lines.append(
            f"  allowed although {base.name} refuses them: {', '.join(sorted(denied_by_base))}"
        )
    for relaxed in changed:
        rid = relaxed.rule.id
        if relaxed.off:
            lines.append(f"  OFF {rid}: nothing narrower allows what was seen")
            continue
        for (param, value), need in relaxed.added.items():
            lines.append(f"  relaxed {rid}: {param} + {value} ({need.describe()})")
        for (param, value), need in relaxed.set.items():
            lines.append(f"  relaxed {rid}: {param} = {value} ({need.describe()})")
        for (param, value), need in relaxed.dropped.items():
            lines.append(
                f"  BROADER {rid}: {param} - {value}: allows more than was seen ({need.describe()})"
            )
    if refused:
        total = sum(refused.values())
        lines.append(f"  refused in the log and still refused ({total}):")
        for (operation, rule), n in sorted(refused.items()):
            lines.append(f"    {operation} ({n}): rule {rule or '?'}")
        lines.append("  (to learn these, run the tool again under policies/permissive.yaml)")
    for operation, n in sorted(uncatalogued.items()):
        lines.append(f"  skipped {operation} ({n}): not an operation this sockproxy knows")
    for rule, n in sorted(unmatched.items()):
        lines.append(f"  ignored {n} warnings of rule {rule}: {base.name} has no such rule")
    return lines


# -- YAML text ---------------------------------------------------------------------------


class _Writer:
    """YAML written by hand: PyYAML can't write comments, and each line gets one."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def comment(self, text: str, indent: int = 0) -> None:
        self.lines.append(" " * indent + "# " + _one_line(text))

    def item(self, value: str, note: str, indent: int) -> None:
        tail = f"  # {_one_line(note)}" if note else ""
        self.lines.append(f"{' ' * indent}- {_scalar(value)}{tail}")

    def flow(self, key: str, values: Sequence[str], indent: int) -> None:
        """``key: [a, b, ...]``, wrapped, for lists nothing was added to."""
        items = [_scalar(v, flow=True) for v in values]
        line, lines = f"{' ' * indent}{key}: [", []
        for n, item in enumerate(items):
            piece = item + ("," if n < len(items) - 1 else "]")
            if len(line) + len(piece) > 96 and not line.endswith("["):
                lines.append(line.rstrip())
                line = " " * (indent + len(key) + 3)
            line += piece + " "
        lines.append(line.rstrip() if items else line.rstrip() + "]")
        self.lines += lines

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:=*@+,()' -]*")
_PLAIN_IN_FLOW = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./=*@+-]*")


def _scalar(value: str, flow: bool = False) -> str:
    """A YAML scalar for ``value``: plain where it reads back as the same string,
    else double-quoted (JSON's escapes are YAML's)."""
    plain = (_PLAIN_IN_FLOW if flow else _PLAIN).fullmatch(value)
    if (
        plain
        and not value.endswith(" ")
        and ": " not in value
        and " #" not in value
        and yaml.safe_load(value) == value
    ):
        return value
    return json.dumps(value)


def _one_line(text: str, limit: int = 160) -> str:
    """Text safe in a comment: no line breaks (YAML counts NEL and U+2028 too)."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def validate(text: str) -> Policy:
    """Load a suggested policy as ``sockproxy check`` would (PolicyError if it can't)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(text)
    try:
        return load_policy(file.name)
    finally:
        os.unlink(file.name)


# -- command line ------------------------------------------------------------------------

HELP = "write the smallest policy allowing what an audit log saw (learning mode)"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sockproxy suggest``, for cli.py's subcommands."""
    _arguments(commands.add_parser("suggest", help=HELP, description=HELP))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", metavar="AUDIT_LOG", help="JSON audit log ('-': stdin)")
    parser.add_argument(
        "--base",
        default=str(DEFAULT_BASE),
        metavar="FILE",
        help="policy whose checks are kept and relaxed (default: policies/default.yaml)",
    )
    parser.add_argument("--name", default="learned", help="the policy's name (default: learned)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument("--uid", type=int, action="append", default=[], help="only this caller")
    parser.add_argument("--user", action="append", default=[], help="only this user name")
    parser.add_argument("--process", action="append", default=[], help="only this process name")
    parser.add_argument("--listener", action="append", default=[], help="only this listener")
    parser.add_argument("--since", type=_time_arg, metavar="TIME", help="ISO 8601, UTC if unzoned")
    parser.add_argument("--until", type=_time_arg, metavar="TIME", help="ISO 8601, exclusive")


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the policy written; 1 when the log or base can't be used."""
    try:
        reading = read(args.logs, sys.stdin)
        base = load_policy(args.base)
    except AuditError as exc:
        print(f"sockproxy suggest: {exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    only = Filter(
        frozenset(args.uid),
        frozenset(args.user),
        frozenset(args.process),
        frozenset(args.listener),
        args.since,
        args.until,
    )
    events = [e for e in reading.events if only.admits(e)]
    skipped = (
        f"{reading.not_json} non-JSON lines and {reading.other_events} other log events skipped"
    )
    if not events:
        print(
            f"sockproxy suggest: no audit events to learn from ({len(reading.events)} read,"
            f" none matched the filters; {skipped}). The log must be JSON"
            " (serve --log-format json; journalctl -o cat).",
            file=sys.stderr,
        )
        return 1
    suggestion = suggest(
        events, base, base_label=args.base, name=args.name, logs=[str(p) for p in args.logs]
    )
    validate(suggestion.policy)  # a policy sockproxy can't load is a bug here, never output
    if args.output:
        try:
            Path(args.output).write_text(suggestion.policy, encoding="utf-8")
        except OSError as exc:
            print(f"sockproxy suggest: {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(suggestion.policy)
    print(f"sockproxy suggest: {skipped}", file=sys.stderr)
    for line in suggestion.summary:
        print(line, file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sockproxy suggest", description=HELP)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
