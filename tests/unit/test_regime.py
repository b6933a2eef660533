"""The regime in force: every policy a configuration names, loaded together."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockproxy.checks import Context
from sockproxy.config import Config, ListenerSpec
from sockproxy.identity import Identity
from sockproxy.policy import PolicyError
from sockproxy.regime import BUILTIN_PERMISSIVE, build_regime

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def _config(policies: dict[str, str]) -> Config:
    listener = ListenerSpec("local", "unix", "/run/a.sock", policy="tenant")
    return Config(listeners=(listener,), policies=policies)


def test_a_stricter_nested_policy_is_loaded_with_the_one_naming_it(tmp_path: Path) -> None:
    (tmp_path / "strict.yaml").write_text(
        f"name: strict\nextends: {DEFAULT}\ndeny:\n  operations: [exec.create]\n"
    )
    (tmp_path / "tenant.yaml").write_text(
        f"name: tenant\nextends: {DEFAULT}\nnested-socket: strict.yaml\n"
    )
    regime = build_regime(_config({"tenant": str(tmp_path / "tenant.yaml")}), Context())
    tenant = regime.policies["tenant"]
    key, nested = regime.nested(tenant) or ("", tenant)
    assert nested.name == "strict"
    assert regime.policies[key] is nested  # found again by the same key after a reload
    policy, _ = regime.select(Identity("local", uid=5))
    assert policy is tenant
    assert str(tmp_path / "strict.yaml") in regime.files


def test_same_means_the_policy_itself(tmp_path: Path) -> None:
    (tmp_path / "tenant.yaml").write_text(f"extends: {DEFAULT}\nnested-socket: same\n")
    regime = build_regime(_config({"tenant": str(tmp_path / "tenant.yaml")}), Context())
    assert regime.nested(regime.policies["tenant"]) == ("tenant", regime.policies["tenant"])
    assert (
        regime.nested(build_regime(_config({"tenant": str(DEFAULT)}), Context()).policies["tenant"])
        is None
    )


def test_every_error_of_every_policy_is_reported_and_nothing_is_built(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("allow: {sections: [nope]}\n")
    (tmp_path / "b.yaml").write_text("checks: [{id: x, check: nope}]\n")
    with pytest.raises(PolicyError) as caught:
        build_regime(
            _config({"a": str(tmp_path / "a.yaml"), "b": str(tmp_path / "b.yaml")}), Context()
        )
    assert [e.split(": ", 1)[0].rsplit("/", 1)[1] for e in caught.value.errors] == [
        "a.yaml:1:20",
        "b.yaml:1:25",
    ]


def test_the_builtin_permissive_policy_has_no_file() -> None:
    regime = build_regime(_config({"tenant": BUILTIN_PERMISSIVE}), Context())
    assert regime.policies["tenant"].source is None
    assert regime.files == ()


def test_a_nested_policy_may_name_a_stricter_one_for_its_own_nested_sockets(
    tmp_path: Path,
) -> None:
    """A container started from a nested socket may be given one in turn:
    every policy down the chain is loaded (and watched), not just the first."""
    (tmp_path / "strictest.yaml").write_text(f"name: strictest\nextends: {DEFAULT}\n")
    (tmp_path / "strict.yaml").write_text(
        f"name: strict\nextends: {DEFAULT}\nnested-socket: strictest.yaml\n"
    )
    (tmp_path / "tenant.yaml").write_text(
        f"name: tenant\nextends: {DEFAULT}\nnested-socket: strict.yaml\n"
    )
    regime = build_regime(_config({"tenant": str(tmp_path / "tenant.yaml")}), Context())
    first = regime.nested(regime.policies["tenant"])
    assert first is not None
    second = regime.nested(first[1])
    assert second is not None
    assert second[1].name == "strictest"
    assert str(tmp_path / "strictest.yaml") in regime.files


def test_an_error_in_a_nested_policy_down_the_chain_is_reported(tmp_path: Path) -> None:
    (tmp_path / "strictest.yaml").write_text("allow: {sections: [nope]}\n")
    (tmp_path / "strict.yaml").write_text(f"extends: {DEFAULT}\nnested-socket: strictest.yaml\n")
    (tmp_path / "tenant.yaml").write_text(f"extends: {DEFAULT}\nnested-socket: strict.yaml\n")
    with pytest.raises(PolicyError) as caught:
        build_regime(_config({"tenant": str(tmp_path / "tenant.yaml")}), Context())
    assert any("strictest.yaml:1:" in error for error in caught.value.errors)
