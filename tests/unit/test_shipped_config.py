"""The configuration example and the tenant policy the docs walk through load as described."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockproxy import cli
from sockproxy.checks import Context
from sockproxy.config import load_config
from sockproxy.identity import Identity
from sockproxy.policy import SAME, load_policy
from sockproxy.regime import build_regime

ROOT = Path(__file__).resolve().parents[2]


def test_the_shared_ci_host_example_loads_and_selects_as_documented() -> None:
    config = load_config(str(ROOT / "docs/examples/shared-ci-host.yaml"))
    regime = build_regime(config, Context())
    admin = Identity("local", uid=1500, user="ops", groups=("docker-admins",))
    runner = Identity("remote", subject="CN=runner-7,O=ci")
    stranger = Identity("remote", subject="CN=laptop")
    gitlab = Identity("local", uid=999, user="gitlab-runner", groups=("gitlab-runner",))
    alice = Identity("local", uid=1001, user="alice", groups=("docker-users",))
    assert regime.select(admin)[0] is regime.policies["admin"]
    assert regime.select(runner)[0] is regime.policies["tenant"]
    assert regime.select(stranger)[0] is None  # no rule, no listener policy: refused
    policy, who = regime.select(gitlab)
    assert policy is regime.policies["tenant"]
    assert who.owner == "gitlab"
    policy, who = regime.select(alice)
    assert policy is regime.policies["tenant"]
    assert who.owner == "uid:1001"
    assert {spec.kind for spec in config.listeners} == {"unix", "tcp"}


def test_the_ci_tenant_policy_isolates_and_nests() -> None:
    policy = load_policy(str(ROOT / "policies/ci-tenant.yaml"))
    assert policy.isolation
    assert policy.nested_policy == SAME
    assert any(rule.id == "no-privileged" for rule in policy.rules)  # default's fence kept


def test_check_validates_a_configuration_and_its_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "--config", str(ROOT / "docs/examples/shared-ci-host.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - unix: /tmp/x.sock\n    polcy: a\n")
    assert cli.main(["check", "--config", str(bad)]) == 1
    assert f"{bad}:3:5: listener: unknown key 'polcy' (did you mean 'policy'?)" in (
        capsys.readouterr().out
    )
