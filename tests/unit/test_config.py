"""The configuration file: what loads, what is refused (with FILE:LINE:COL), and
which policy each client gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockproxy.config import Config, ConfigError, ListenerSpec, Match, Selection, load_config
from sockproxy.identity import Identity

GOOD = """\
upstream: unix:///run/docker.sock
policies:
  tenant: tenant.yaml
  admin: /etc/sockproxy/admin.yaml
listeners:
  - name: local
    unix: run/docker.sock
    mode: "0600"
    group: "0"
    policy: tenant
  - name: remote
    tcp: 127.0.0.1:2376
    tls: {cert: s.pem, key: s-key.pem, client-ca: ca.pem}
identities:
  - match: {group: [admins, "0"]}
    policy: admin
  - match: {subject: "CN=runner-*"}
    policy: tenant
    tenant: runners
nested-sockets: nested
metrics: tcp://127.0.0.1:9102
limits: {max-connections: 10, head-timeout: 2.5}
"""


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "sockproxy.yaml"
    path.write_text(text)
    return load_config(str(path))


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return [error.split("sockproxy.yaml:", 1)[1] for error in caught.value.errors]


def test_a_full_configuration_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    assert config.upstream == "unix:///run/docker.sock"
    assert dict(config.policies) == {
        "tenant": str(tmp_path / "tenant.yaml"),
        "admin": "/etc/sockproxy/admin.yaml",
    }
    local, remote = config.listeners
    assert local == ListenerSpec(
        "local", "unix", str(tmp_path / "run/docker.sock"), 0o600, "0", None, "tenant"
    )
    assert remote.kind == "tcp"
    assert remote.tls is not None
    assert remote.tls.client_ca == str(tmp_path / "ca.pem")
    assert config.nested_dir == str(tmp_path / "nested")
    assert config.metrics == "tcp://127.0.0.1:9102"
    assert (config.limits.max_connections, config.limits.head_timeout) == (10, 2.5)
    assert config.source == str(tmp_path / "sockproxy.yaml")


MINIMAL = "policies: {p: p.yaml}\nlisteners:\n  - unix: /run/x.sock\n    policy: p\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "listners: []\n",
            "1:1: configuration: unknown key 'listners' (did you mean 'listeners'?)",
        ),
        ("policies: {}\n", "1:1: configuration: 'listeners' is required"),
        ("listeners: []\n", "1:12: listeners must be a non-empty list"),
        (
            "listeners:\n  - unix: /a.sock\n    tcp: 1.2.3.4:1\n",
            "2:5: listener: give exactly one of unix, tcp or systemd",
        ),
        (
            "listeners:\n  - tcp: 0.0.0.0:2375\n",
            "2:5: tcp: a TCP listener requires tls (client certificates);"
            " plain TCP needs 'insecure-plain-tcp: true'",
        ),
        (
            "listeners:\n  - tcp: nowhere\n    insecure-plain-tcp: true\n",
            "2:10: tcp: give HOST:PORT",
        ),
        (
            "listeners:\n  - unix: /a.sock\n    tls: {cert: a, key: b, client-ca: c}\n",
            "3:5: tls: only a tcp listener takes tls",
        ),
        (
            "listeners:\n  - tcp: 1.2.3.4:1\n    tls: {cert: a}\n",
            "3:10: tls: 'client-ca' is required",
        ),
        (
            "listeners:\n  - tcp: 1.2.3.4:1\n    insecure-plain-tcp: true\n    group: docker\n",
            "2:5: listener: owner and group apply to unix listeners only",
        ),
        (
            "listeners:\n  - unix: /a.sock\n    mode: '999'\n",
            '3:11: mode must be an octal permission mode like "0660"',
        ),
        (
            "listeners:\n  - unix: /a.sock\n    policy: nope\n",
            "3:13: policy: no policy named 'nope' under 'policies'",
        ),
        (
            "listeners:\n  - {name: a, unix: /a.sock}\n  - {name: a, unix: /b.sock}\n",
            "2:3: listeners: the name 'a' is used twice",
        ),
        (
            "listeners:\n  - unix: /a.sock\n    polcy: p\n",
            "3:5: listener: unknown key 'polcy' (did you mean 'policy'?)",
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: alice}\n    policy: p\n",
            "6:18: match.uid: 'alice' is not a number",
        ),
        (
            MINIMAL + "identities:\n  - match: {}\n    policy: p\n",
            "6:12: match: give at least one of group, listener, process, subject, uid, user",
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: 1}\n",
            "6:5: identity: 'match' and 'policy' are required",
        ),
        (
            MINIMAL + "metrics: http://x\n",
            "5:10: metrics: 'http://x': give tcp://HOST:PORT or unix:///PATH",
        ),
        (
            MINIMAL + "limits: {max-conections: 1}\n",
            "5:10: limits: unknown key 'max-conections' (did you mean 'max-connections'?)",
        ),
    ],
)
def test_mistakes_are_refused_with_their_position(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _errors(tmp_path, text)


def test_plain_tcp_is_an_explicit_opt_in(tmp_path: Path) -> None:
    config = _load(tmp_path, "listeners:\n  - tcp: 127.0.0.1:2375\n    insecure-plain-tcp: true\n")
    assert config.listeners[0].plain_tcp
    assert config.listeners[0].tls is None


ALICE = Identity("local", uid=1001, gid=1001, user="alice", groups=("alice", "ci"))
ROOT = Identity("local", uid=0, gid=0, user="root", groups=("root",))
RUNNER = Identity("remote", subject="CN=runner-1,O=example")
FORGED = Identity("remote", subject="CN=alice")  # a certificate never matches uid/user rules


def _config(*rules: Selection, listener_policy: str | None = "fallback") -> Config:
    listeners = (
        ListenerSpec("local", "unix", "/run/a.sock", policy=listener_policy),
        ListenerSpec("remote", "tcp", "0.0.0.0:2376"),
    )
    return Config(listeners=listeners, policies={}, identities=rules, default_policy=None)


@pytest.mark.parametrize(
    ("rules", "who", "expected"),
    [
        ((Selection(Match(uid=frozenset({1001})), "ci"),), ALICE, "ci"),
        ((Selection(Match(user=frozenset({"alice"})), "ci"),), ALICE, "ci"),
        ((Selection(Match(group=frozenset({"ci"})), "ci"),), ALICE, "ci"),
        ((Selection(Match(group=frozenset({"0"})), "admin"),), ROOT, "admin"),  # a gid
        ((Selection(Match(group=frozenset({"ci"})), "ci"),), ROOT, "fallback"),
        ((Selection(Match(process=("dock*",)), "p"),), Identity("local", process="dockerd"), "p"),
        ((Selection(Match(subject=("CN=runner-*",)), "ci"),), RUNNER, "ci"),
        ((Selection(Match(subject=("CN=runner-*",)), "ci"),), ALICE, "fallback"),
        ((Selection(Match(user=frozenset({"alice"})), "ci"),), FORGED, None),
        ((Selection(Match(uid=frozenset({-1})), "ci"),), RUNNER, None),
        ((Selection(Match(listener=frozenset({"remote"})), "r"),), RUNNER, "r"),
        # All keys of a match must fit; the first matching rule wins.
        (
            (Selection(Match(user=frozenset({"alice"}), group=frozenset({"x"})), "a"),),
            ALICE,
            "fallback",
        ),
        (
            (
                Selection(Match(group=frozenset({"ci"})), "first"),
                Selection(Match(uid=frozenset({1001})), "second"),
            ),
            ALICE,
            "first",
        ),
        ((), RUNNER, None),  # no rule, a listener without a policy: none (refused)
    ],
)
def test_policy_selection(
    rules: tuple[Selection, ...], who: Identity, expected: str | None
) -> None:
    assert _config(*rules).select(who)[0] == expected


def test_a_rule_with_a_tenant_shares_one_owner() -> None:
    config = _config(Selection(Match(group=frozenset({"ci"})), "ci", tenant="ci-jobs"))
    name, who = config.select(ALICE)
    assert (name, who.owner) == ("ci", "ci-jobs")
    assert config.select(ROOT)[1].owner == "uid:0"
    assert RUNNER.owner == "cert:CN=runner-1,O=example"


def test_flags_give_every_client_the_default_policy() -> None:
    config = Config(listeners=(), policies={"main": "p.yaml"}, default_policy="main")
    assert config.select(ALICE)[0] == "main"
    assert config.select(RUNNER)[0] == "main"
