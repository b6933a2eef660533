"""Learning mode: from the audit lines of requests served under permissive.yaml,
`sockproxy suggest` writes the smallest policy that allows them, and nothing broader.

Each test feeds audit lines (built as the proxy writes them: the request
evaluated under permissive.yaml, its warnings as audited), loads the policy
written exactly as `sockproxy check` would, and shows what it allows and
what it still refuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sockproxy import suggest
from sockproxy.checks import REGISTRY
from sockproxy.model import (
    ContainerSpec,
    Device,
    ExecSpec,
    Mount,
    Namespace,
    NamespaceMode,
    Request,
)
from sockproxy.policy import Mode, Policy, evaluate, load_policy
from sockproxy.routes import ENDPOINTS

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PERMISSIVE = load_policy(str(POLICIES / "permissive.yaml"))
DEFAULT = load_policy(str(POLICIES / "default.yaml"))
CALLER = {
    "listener": "ci",
    "uid": 1000,
    "gid": 1000,
    "pid": 4242,
    "user": "ci",
    "process": "docker",
}


def audit_line(
    request: Request,
    *,
    method: str = "POST",
    policy: Policy = PERMISSIVE,
    caller: Mapping[str, object] = CALLER,
    timestamp: str = "2024-06-01T10:00:00.000000Z",
) -> str:
    """The JSON line sockproxy writes for `request` decided under `policy`."""
    decision = evaluate(policy, request)
    event: dict[str, object] = {
        "event": "request",
        "method": method,
        "path": "/" + request.operation.replace(".", "/"),
        "operation": request.operation,
        "decision": "allow" if decision.allowed else "deny",
        "rule": decision.rule,
        "status": 201 if decision.allowed else 403,
        "duration_ms": 1.5,
        "policy": policy.name,
        "policy_digest": policy.digest,
        "level": "warning" if decision.warnings else "info",
        "timestamp": timestamp,
        **caller,
    }
    if not decision.allowed:
        event["reason"] = decision.reason
    if decision.warnings:
        event["warnings"] = [w.audit_fields() for w in decision.warnings]
    return json.dumps(event)


@dataclass
class Learnt:
    policy: Policy
    text: str
    summary: str


def learn(*lines: str, base: Policy = DEFAULT) -> Learnt:
    reading = suggest.Reading()
    suggest.parse(lines, "audit.log", reading)
    result = suggest.suggest(reading.events, base, base_label="default.yaml", logs=["audit.log"])
    return Learnt(suggest.validate(result.policy), result.policy, "\n".join(result.summary))


def create(**fields: object) -> Request:
    return Request("container.create", "container", containers=(ContainerSpec(**fields),))  # type: ignore[arg-type]


def bind(source: str) -> Mount:
    return Mount("bind", source, "/data", False, (), "HostConfig.Binds[0]")


def ping() -> Request:
    return Request("system.ping", "system")


def refused_by(policy: Policy, request: Request) -> str | None:
    decision = evaluate(policy, request)
    return None if decision.allowed else decision.rule


# -- operations --------------------------------------------------------------------------


def test_the_policy_allows_exactly_the_operations_seen() -> None:
    learnt = learn(
        audit_line(ping(), method="HEAD"),
        audit_line(Request("container.list", "container"), method="GET"),
        audit_line(create()),
    )
    assert learnt.policy.sections == frozenset()
    assert learnt.policy.allow_operations == {"system.ping", "container.list", "container.create"}
    assert refused_by(learnt.policy, create()) is None
    assert refused_by(learnt.policy, Request("container.delete", "container")) == (
        "operation-not-allowed"
    )
    assert "- container.create  # 1 request (POST)" in learnt.text


def test_a_section_is_never_allowed_even_when_all_its_operations_were_seen() -> None:
    tasks = sorted({e.operation for e in ENDPOINTS if e.section == "task"})
    learnt = learn(*(audit_line(Request(op, "task"), method="GET") for op in tasks))
    assert learnt.policy.sections == frozenset()
    assert learnt.policy.allow_operations == set(tasks)


def test_an_operation_the_base_denies_is_allowed_because_it_was_seen_and_flagged() -> None:
    learnt = learn(audit_line(Request("build.session", "build")))
    assert refused_by(learnt.policy, Request("build.session", "build")) is None
    assert "default refuses it" in learnt.text
    assert "allowed although default refuses them: build.session" in learnt.summary


def test_refusals_in_the_log_stay_refused_and_are_listed() -> None:
    """A log written under a stricter policy: what it refused is not learnt."""
    learnt = learn(
        audit_line(ping()),
        audit_line(Request("exec.create", "exec", exec=ExecSpec()), policy=load_read_only()),
    )
    assert refused_by(learnt.policy, Request("exec.create", "exec", exec=ExecSpec())) == (
        "operation-not-allowed"
    )
    assert "exec.create (1): rule operation-not-allowed" in learnt.summary


def load_read_only() -> Policy:
    return load_policy(str(POLICIES / "read-only.yaml"))


# -- checks: allow lists get exactly the values seen ---------------------------------------


def test_rules_nothing_warned_on_are_kept_exactly_as_in_the_base() -> None:
    learnt = learn(audit_line(create()))
    assert [(r.id, r.check, r.mode, r.message, dict(r.params)) for r in learnt.policy.rules] == [
        (r.id, r.check, r.mode, r.message, dict(r.params)) for r in DEFAULT.rules
    ]


def test_an_added_capability_is_allowed_and_no_other() -> None:
    learnt = learn(audit_line(create(cap_add=("SYS_PTRACE", "NET_ADMIN"))))
    assert refused_by(learnt.policy, create(cap_add=("SYS_PTRACE", "NET_ADMIN"))) is None
    assert refused_by(learnt.policy, create(cap_add=("SYS_ADMIN",))) == "default-capabilities"
    assert "- SYS_PTRACE  # added for 1 request: container.create" in learnt.text
    assert "relaxed default-capabilities: allow + NET_ADMIN" in learnt.summary


def test_a_bind_outside_the_allowed_paths_is_allowed_exactly_not_its_parent_or_siblings() -> None:
    seen = "/var/tmp/sp-learn-unit/data"
    learnt = learn(audit_line(create(mounts=(bind(seen),))))
    assert refused_by(learnt.policy, create(mounts=(bind(seen),))) is None
    for broader in ("/var/tmp/sp-learn-unit", "/var/tmp/sp-learn-unit/other", "/var/tmp", "/"):
        assert refused_by(learnt.policy, create(mounts=(bind(broader),))) == "bind-mount-paths"
    assert refused_by(learnt.policy, create(mounts=(bind(seen + "/inner"),))) == (
        "bind-mount-paths"
    )


def test_a_sysctl_is_added_as_a_literal_never_as_a_pattern() -> None:
    learnt = learn(audit_line(create(sysctls=(("kernel.msgmax", "65536"),))))
    assert refused_by(learnt.policy, create(sysctls=(("kernel.msgmax", "1"),))) is None
    assert refused_by(learnt.policy, create(sysctls=(("kernel.msgmnb", "1"),))) == "safe-sysctls"


def test_glob_characters_in_a_seen_security_option_are_escaped() -> None:
    option = "apparmor=my*profile"
    learnt = learn(audit_line(create(security_opt=(option,))))
    assert refused_by(learnt.policy, create(security_opt=(option,))) is None
    assert refused_by(learnt.policy, create(security_opt=("apparmor=my-unconfined-profile",))) == (
        "confined"
    )


def test_a_seen_device_is_allowed_and_no_other() -> None:
    fuse = Device("/dev/fuse", "/dev/fuse", "rwm", "HostConfig.Devices[0]")
    sda = Device("/dev/sda", "/dev/sda", "rwm", "HostConfig.Devices[0]")
    learnt = learn(audit_line(create(devices=(fuse,))))
    assert refused_by(learnt.policy, create(devices=(fuse,))) is None
    assert refused_by(learnt.policy, create(devices=(sda,))) == "no-devices"


def test_warnings_of_a_rule_the_base_names_otherwise_relax_the_rule_of_that_kind() -> None:
    line = json.loads(audit_line(create(cap_add=("SYS_PTRACE",))))
    line["warnings"][0]["rule"] = "my-capabilities"
    learnt = learn(json.dumps(line))
    assert refused_by(learnt.policy, create(cap_add=("SYS_PTRACE",))) is None


# -- checks: broader relaxations are said so --------------------------------------------------


def test_a_deny_entry_a_bind_needed_is_dropped_and_reported_as_broader() -> None:
    learnt = learn(audit_line(create(mounts=(bind("/home/ci/.ssh"),))))
    rule = next(r for r in learnt.policy.rules if r.id == "bind-mount-paths")
    assert ".ssh" not in rule.params["deny"]
    assert refused_by(learnt.policy, create(mounts=(bind("/home/ci/.ssh"),))) is None
    assert refused_by(learnt.policy, create(mounts=(bind("/home/ci/.gnupg"),))) == (
        "bind-mount-paths"
    )
    assert "BROADER bind-mount-paths: deny - .ssh" in learnt.summary
    assert "# dropped .ssh: allows more than was seen" in learnt.text


def test_a_bind_outside_and_denied_learns_both_in_one_pass() -> None:
    """Warn mode audits every finding, so one learning run is enough."""
    seen = "/var/tmp/sp-learn-unit/.ssh"
    learnt = learn(audit_line(create(mounts=(bind(seen),))))
    assert refused_by(learnt.policy, create(mounts=(bind(seen),))) is None


def test_a_host_namespace_drops_only_its_kind() -> None:
    host_net = Namespace("net", NamespaceMode.HOST, "", "HostConfig.NetworkMode")
    host_pid = Namespace("pid", NamespaceMode.HOST, "", "HostConfig.PidMode")
    learnt = learn(audit_line(create(namespaces=(host_net,))))
    assert refused_by(learnt.policy, create(namespaces=(host_net,))) is None
    assert refused_by(learnt.policy, create(namespaces=(host_pid,))) == "no-host-namespaces"
    assert "BROADER no-host-namespaces: kinds - net" in learnt.summary


def test_joining_another_container_turns_allow_join_on() -> None:
    join = Namespace("net", NamespaceMode.CONTAINER, "db", "HostConfig.NetworkMode")
    learnt = learn(audit_line(create(namespaces=(join,))))
    assert refused_by(learnt.policy, create(namespaces=(join,))) is None
    assert "allow-join: true  # relaxed for 1 request: container.create" in learnt.text


def test_a_check_no_parameter_can_narrow_is_turned_off_listing_what_was_seen() -> None:
    learnt = learn(audit_line(create(privileged=True)), audit_line(create(privileged=True)))
    rule = next(r for r in learnt.policy.rules if r.id == "no-privileged")
    assert rule.mode is Mode.OFF
    assert "#   privileged container (2 requests: container.create)" in learnt.text
    assert "OFF no-privileged" in learnt.summary


def test_an_inline_seccomp_profile_is_never_audited_and_turns_the_rule_off() -> None:
    profile = "seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["x"] * 60})
    line = audit_line(create(security_opt=(profile,)))
    assert profile not in line
    learnt = learn(line)
    assert next(r for r in learnt.policy.rules if r.id == "confined").mode is Mode.OFF


def test_warn_mode_audits_every_violation_of_a_rule_enforcing_stops_at_the_first() -> None:
    request = create(cap_add=("SYS_ADMIN", "NET_ADMIN"))
    warned = evaluate(PERMISSIVE, request).warnings
    assert [(w.rule, w.param, w.subject) for w in warned] == [
        ("default-capabilities", "allow", "SYS_ADMIN"),
        ("default-capabilities", "allow", "NET_ADMIN"),
    ]
    assert evaluate(DEFAULT, request).reason == (
        "sockproxy: capability SYS_ADMIN added (rule default-capabilities, policy default)"
    )


# -- what the policy text is made of ------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "/var/tmp/a: b # c",
        "/var/tmp/new\nline",
        '/var/tmp/"quoted"',
        "/var/tmp/\u2028sep",
        "/var/tmp/*",
    ],
    ids=["colon and hash", "newline", "quotes", "unicode line separator", "glob"],
)
def test_hostile_values_round_trip_as_the_same_string(source: str) -> None:
    learnt = learn(audit_line(create(mounts=(bind(source),))))
    rule = next(r for r in learnt.policy.rules if r.id == "bind-mount-paths")
    assert rule.params["exact"] == (source,)
    assert refused_by(learnt.policy, create(mounts=(bind(source),))) is None


def test_the_policy_has_a_name_a_description_and_says_where_it_came_from() -> None:
    learnt = learn(audit_line(ping()))
    assert learnt.policy.name == "learned"
    assert "\ndescription: " in learnt.text
    assert learnt.text.startswith("# Written by `sockproxy suggest` from audit.log:")
    assert "# Callers: listener=ci user=ci uid=1000 process=docker (1)" in learnt.text


def test_isolation_and_nested_sockets_of_the_base_are_kept(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {POLICIES / 'default.yaml'}\nisolation: true\nnested-socket: same\n")
    learnt = learn(audit_line(ping()), base=load_policy(str(base)))
    assert learnt.policy.isolation is True
    assert learnt.policy.nested_policy == "same"


def test_every_strategy_names_a_parameter_of_its_check() -> None:
    for (kind, param), how in suggest.STRATEGIES.items():
        params = REGISTRY[kind].params
        name = param.replace("-", "_")
        assert name in params, (kind, param)
        assert (params[name].kind == "bool") == (how is suggest.How.SET), (kind, param)


# -- reading audit logs -----------------------------------------------------------------------


def test_lines_that_are_not_json_and_other_log_events_are_skipped_and_counted() -> None:
    reading = suggest.Reading()
    lines = [
        "2024-06-01 10:00:00 [info     ] listening  (console format)",
        json.dumps({"event": "listening", "sockets": ["/run/x.sock"]}),
        "",
        audit_line(ping()),
    ]
    suggest.parse(lines, "audit.log", reading)
    assert (len(reading.events), reading.not_json, reading.other_events) == (1, 1, 1)


def test_a_truncated_audit_line_is_an_error_naming_file_and_line() -> None:
    lines = [audit_line(ping()), audit_line(ping())[:40]]
    with pytest.raises(suggest.AuditError, match=r"^audit\.log:2: not a JSON audit line"):
        suggest.parse(lines, "audit.log", suggest.Reading())


def test_unknown_fields_are_ignored() -> None:
    line = json.loads(audit_line(ping()))
    line.update(tenant="team-a", engine_ms=3.2, something_new={"nested": [1]})
    assert learn(json.dumps(line)).policy.allow_operations == {"system.ping"}


def test_warnings_from_before_structured_warnings_turn_their_rule_off() -> None:
    line = json.loads(audit_line(create(cap_add=("SYS_PTRACE",))))
    line["warnings"] = ["default-capabilities: capability SYS_PTRACE added"]
    learnt = learn(json.dumps(line))
    assert next(r for r in learnt.policy.rules if r.id == "default-capabilities").mode is Mode.OFF


def test_filters_keep_one_callers_requests_in_a_time_span() -> None:
    other = {**CALLER, "uid": 0, "user": "root", "process": "traefik", "listener": "ops"}
    reading = suggest.Reading()
    lines = [
        audit_line(ping(), caller=other),
        audit_line(create(), timestamp="2024-06-01T09:00:00Z"),
        audit_line(Request("container.list", "container")),
    ]
    suggest.parse(lines, "audit.log", reading)
    events = reading.events
    only = suggest.Filter(uids=frozenset({1000}), since=suggest.parse_time("2024-06-01T09:30"))
    assert [e.operation for e in events if only.admits(e)] == ["container.list"]
    for key, value in (("users", "root"), ("processes", "traefik"), ("listeners", "ops")):
        only = suggest.Filter(**{key: frozenset({value})})  # type: ignore[arg-type]
        assert [e.operation for e in events if only.admits(e)] == ["system.ping"]


# -- the command ------------------------------------------------------------------------------


def test_the_command_writes_a_policy_that_sockproxy_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sockproxy.policy import check_files

    log = tmp_path / "audit.log"
    log.write_text(audit_line(ping()) + "\n" + audit_line(create(cap_add=("SYS_PTRACE",))) + "\n")
    out = tmp_path / "learned.yaml"
    assert suggest.main([str(log), "-o", str(out), "--name", "ci-runner"]) == 0
    assert list(check_files([str(out)])) == []
    assert load_policy(str(out)).name == "ci-runner"
    err = capsys.readouterr().err
    assert "operations allowed (2): container.create (1), system.ping (1)" in err
    assert "relaxed default-capabilities: allow + SYS_PTRACE" in err


def test_the_command_reads_stdin_and_prints_the_policy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(audit_line(ping()) + "\n"))
    assert suggest.main(["-"]) == 0
    assert "    - system.ping  # 1 request (POST)" in capsys.readouterr().out


def test_no_matching_events_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.log"
    log.write_text(audit_line(ping()) + "\n")
    assert suggest.main([str(log), "--uid", "4321"]) == 1
    assert "no audit events to learn from (1 read" in capsys.readouterr().err


def test_a_bad_line_is_an_error_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.log"
    log.write_text(audit_line(ping()) + "\n{not json\n")
    assert suggest.main([str(log)]) == 1
    assert f"sockproxy suggest: {log}:2: not a JSON audit line" in capsys.readouterr().err
