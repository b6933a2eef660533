"""Policy files: a typo is an error with file, line and column, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockproxy.policy import Mode, PolicyError, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.mark.parametrize("name", ["default.yaml", "permissive.yaml", "read-only.yaml"])
def test_shipped_policies_load(name: str) -> None:
    policy = load_policy(str(POLICIES / name))
    assert policy.rules or name == "read-only.yaml"
    assert len(policy.digest) == 16


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    return [e.replace(str(path), "p.yaml") for e in caught.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nme: x\n", "p.yaml:1:1: policy: unknown key 'nme' (did you mean 'name'?)"),
        ("name: x\nallow:\n  section: [a]\n", "p.yaml:3:3: allow: unknown key 'section'"),
        (
            "checks:\n  - id: a\n    check: privilegd\n",
            "p.yaml:3:12: unknown check kind 'privilegd' (did you mean 'privileged'?)",
        ),
        (
            "checks:\n  - id: a\n    check: privileged\n    mode: enforced\n",
            "p.yaml:4:11: mode must be enforce, warn or off",
        ),
        (
            "checks:\n  - id: a\n    check: bind-mounts\n    alow: [/srv]\n",
            "p.yaml:4:5: check a: unknown key 'alow' (did you mean 'allow'?)",
        ),
        (
            "checks:\n  - id: a\n    check: bind-mounts\n    allow: /srv\n",
            "p.yaml:4:12: allow must be a list of strings",
        ),
        ("checks:\n  - check: privileged\n", "p.yaml:2:5: check: missing 'id'"),
        ("name: a\nname: b\n", "p.yaml:2:1: policy: duplicate key 'name'"),
        (
            "checks:\n  - {id: a, check: privileged}\n  - {id: a, check: devices}\n",
            "p.yaml:1:1: rule id 'a' is used twice",
        ),
        ("name: [\n", "p.yaml:2:1: invalid YAML"),
        ("", "p.yaml:1:1: the policy is empty"),
        ("- a\n", "p.yaml:1:1: policy must be a mapping"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(tmp_path, text)), errors_of(tmp_path, text)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(str(tmp_path / "nope.yaml"))


def test_extends_merges_rules_by_id_and_replaces_lists(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "allow: {sections: [container]}\n"
        "checks:\n  - {id: a, check: privileged}\n  - {id: b, check: devices}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "name: child\nextends: base.yaml\nchecks:\n  - {id: b, check: devices, mode: off}\n"
    )
    policy = load_policy(str(tmp_path / "child.yaml"))
    assert policy.sections == {"container"}
    assert [(r.id, r.mode) for r in policy.rules] == [("a", Mode.ENFORCE), ("b", Mode.OFF)]


def test_extends_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(PolicyError, match="loops back"):
        load_policy(str(tmp_path / "a.yaml"))


def test_all_checks_sets_every_inherited_mode() -> None:
    policy = load_policy(str(POLICIES / "permissive.yaml"))
    assert {rule.mode for rule in policy.rules} == {Mode.WARN}


def test_committed_schema_matches_the_check_registry() -> None:
    """policies/policy.schema.json is regenerated with `sockproxy schema`."""
    import json

    from sockproxy.schema import policy_schema

    committed = json.loads((POLICIES / "policy.schema.json").read_text())
    assert committed == policy_schema()


def test_unknown_operation_and_section_names_are_errors(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, "allow:\n  operations: [container.creat]\n  sections: [containr]\n"
    )
    assert "p.yaml:2:16: allow.operations: unknown name 'container.creat'" in errors[1]
    assert "(did you mean 'container.create'?)" in errors[1]
    assert errors[0].startswith("p.yaml:3:14: allow.sections: unknown name 'containr'")


READ_ONLY_ALLOWS = [
    "system.ping",
    "system.events",
    "container.list",
    "container.inspect",
    "container.stats",
    "image.list",
    "network.list",
    "volume.list",
]
READ_ONLY_REFUSES = [
    "container.archive-get",
    "container.export",
    "image.save",
    "container.attach",
    "container.logs",
    "exec.create",
    "exec.start",
    "container.create",
    "container.delete",
    "image.pull",
    "secret.inspect",
    "swarm.unlockkey",
    "debug.pprof",
    "container.copy",
]


@pytest.mark.parametrize("operation", READ_ONLY_ALLOWS)
def test_read_only_allows_reads(operation: str) -> None:
    from sockproxy.model import Request
    from sockproxy.policy import evaluate

    policy = load_policy(str(POLICIES / "read-only.yaml"))
    assert evaluate(policy, Request(operation, operation.split(".")[0])).allowed


@pytest.mark.parametrize("operation", READ_ONLY_REFUSES)
def test_read_only_refuses_writes_and_reads_that_leak_data(operation: str) -> None:
    from sockproxy.model import Request
    from sockproxy.policy import evaluate

    policy = load_policy(str(POLICIES / "read-only.yaml"))
    decision = evaluate(policy, Request(operation, operation.split(".")[0]))
    assert decision.rule == "operation-not-allowed"
