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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "policies: {p: p.yaml}\nlisteners:\n  - {name: local, unix: /a.sock}\n"
            "identities:\n  - match: {listener: locl}\n    policy: p\n",
            "5:23: match.listener: no listener named 'locl' (did you mean 'local'?)",
        ),
        (
            # An empty list would drop the key, and the rule would match everyone.
            MINIMAL + "identities:\n  - match: {group: []}\n    policy: p\n",
            "6:20: match.group: the list is empty",
        ),
        (
            MINIMAL + "identities:\n  - match: {user: }\n    policy: p\n",
            "6:18: match.user must be a value or a list of values",
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: [1, {a: 2}]}\n    policy: p\n",
            "6:22: match.uid must be a value or a list of values",
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: '²'}\n    policy: p\n",
            "6:18: match.uid: '²' is not a number",  # isdigit() but not int(): no traceback
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: 1}\n    policy: nope\n",
            "7:13: policy: no policy named 'nope' under 'policies'",
        ),
        (
            MINIMAL + "identities:\n  - match: {uid: 1}\n    policy: p\n    tennant: x\n",
            "8:5: identity: unknown key 'tennant' (did you mean 'tenant'?)",
        ),
        (
            "listeners:\n  - unix: /a.sock\n    owner: root\n    insecure-plain-tcp: true\n",
            "4:5: listener: unknown key 'insecure-plain-tcp'",  # only a tcp listener takes it
        ),
        (
            "listeners:\n  - tcp: 1.2.3.4:1\n    tls: {cert: a, key: b, client-ca: c}\n"
            "    owner: root\n",
            "2:5: listener: owner and group apply to unix listeners only",
        ),
        (
            "listeners:\n  - unix: /a.sock\n    mode: 0660\n",  # YAML reads 0660 as a number
            '3:11: mode must be an octal permission mode like "0660"',
        ),
        ("listeners: {unix: /a.sock}\n", "1:12: listeners must be a non-empty list"),
        ("listeners:\n  - unix: /a.sock\nidentities: {}\n", "3:13: identities must be a list"),
        ("- a\n", "1:1: configuration must be a mapping"),
        ("", "1:1: the configuration is empty"),
        ("listeners: [\n", "2:1: invalid YAML"),
    ],
)
def test_more_mistakes_are_refused_with_their_position(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert any(error.startswith(expected) for error in _errors(tmp_path, text)), _errors(
        tmp_path, text
    )


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ("{max-connections: true}", "5:27: limits.max-connections must be a whole number"),
        ("{max-connections: '10'}", "5:27: limits.max-connections must be a whole number"),
        ("{body-bytes: 1.5}", "5:22: limits.body-bytes must be a whole number"),
        ("{max-connections: 0}", "5:27: limits.max-connections must be a whole number"),
        ("{head-timeout: -1}", "5:24: limits.head-timeout must be a number greater than 0"),
        ("{idle-timeout: .nan}", "5:24: limits.idle-timeout must be a number greater than 0"),
        ("{idle-timeout: .inf}", "5:24: limits.idle-timeout must be a number greater than 0"),
        ("{head-timeout: [1]}", "5:24: limits.head-timeout must be a number greater than 0"),
        ("[1]", "5:9: limits must be a mapping"),
    ],
)
def test_limits_are_positive_numbers_never_strings_or_booleans(
    tmp_path: Path, limits: str, expected: str
) -> None:
    assert expected in " ".join(_errors(tmp_path, MINIMAL + f"limits: {limits}\n"))


def test_limits_take_integers_where_counts_are_meant_and_numbers_for_times(
    tmp_path: Path,
) -> None:
    config = _load(tmp_path, MINIMAL + "limits: {body-bytes: 1024, idle-timeout: 5}\n")
    assert config.limits.body_bytes == 1024
    assert config.limits.idle_timeout == 5.0
    assert isinstance(config.limits.idle_timeout, float)


def test_a_uid_may_be_a_list_of_numbers(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        MINIMAL + "identities:\n  - match: {uid: [1001, 1002], user: root}\n    policy: p\n",
    )
    assert config.identities[0].match.uid == frozenset({1001, 1002})
    assert config.identities[0].match.user == frozenset({"root"})


def test_a_relative_configuration_path_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the file names must not depend on the working directory: the
    engine binds nested sockets by path, and reloads read the file by its
    absolute path."""
    (tmp_path / "sockproxy.yaml").write_text(
        "policies: {p: p.yaml}\nlisteners:\n  - unix: docker.sock\n    policy: p\n"
        "  - tcp: 127.0.0.1:1\n    tls: {cert: c.pem, key: k.pem, client-ca: ca.pem}\n"
        "nested-sockets: nested\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("sockproxy.yaml")
    assert config.listeners[0].address == str(tmp_path / "docker.sock")
    assert config.listeners[0].name == str(tmp_path / "docker.sock")
    assert config.listeners[1].tls is not None
    assert config.listeners[1].tls.cert == str(tmp_path / "c.pem")
    assert config.policies["p"] == str(tmp_path / "p.yaml")
    assert config.nested_dir == str(tmp_path / "nested")
    assert config.source == str(tmp_path / "sockproxy.yaml")


def test_a_listener_without_a_name_is_named_by_its_address(tmp_path: Path) -> None:
    config = _load(tmp_path, MINIMAL + "identities:\n  - match: {listener: /run/x.sock}\n"
                   "    policy: p\n")  # fmt: skip
    assert config.listeners[0].name == "/run/x.sock"
    assert config.identities[0].match.listener == frozenset({"/run/x.sock"})


def test_systemd_listeners_are_named_by_their_file_descriptor_name(tmp_path: Path) -> None:
    config = _load(tmp_path, "listeners:\n  - systemd: sockproxy.socket\n")
    assert (config.listeners[0].kind, config.listeners[0].name) == ("systemd", "sockproxy.socket")


CI = Identity("local", uid=1002, gid=1002, user="ci", groups=("ci",))


@pytest.mark.parametrize(
    ("match", "who", "matches"),
    [
        # A list matches any of its values.
        (Match(uid=frozenset({1001, 1002})), ALICE, True),
        (Match(uid=frozenset({1001, 1002})), CI, True),
        (Match(user=frozenset({"bob", "ci"})), ALICE, False),
        (Match(group=frozenset({"ops", "ci"})), ALICE, True),
        (Match(process=("cron", "dock*")), Identity("local", process="docker"), True),
        (Match(subject=("CN=a", "CN=runner-*")), RUNNER, True),
        # Every key must match.
        (Match(uid=frozenset({1001}), listener=frozenset({"local"})), ALICE, True),
        (Match(uid=frozenset({1001}), listener=frozenset({"remote"})), ALICE, False),
        (Match(group=frozenset({"ci"}), user=frozenset({"ci"})), ALICE, False),
        # uid, user and group never match a TLS identity, whatever else it holds.
        (Match(uid=frozenset({1001})), Identity("remote", uid=1001, subject="CN=x"), False),
        (Match(user=frozenset({"alice"})), Identity("remote", user="alice", subject="CN=x"), False),
        (Match(group=frozenset({"ci"})), Identity("remote", groups=("ci",), subject="CN=x"), False),
        # subject never matches a Unix identity, even with a catch-all glob.
        (Match(subject=("*",)), ALICE, False),
        (Match(subject=("CN=runner-*",)), Identity("remote", subject="CN=runner-1,O=x"), True),
        (Match(subject=("CN=runner-?",)), Identity("remote", subject="CN=runner-10"), False),
        (Match(subject=("cn=runner-*",)), RUNNER, False),  # case matters
        # A gid in the rule matches the group's name in the kernel's list.
        (Match(group=frozenset({"0"})), ROOT, True),
        (Match(group=frozenset({"0"})), ALICE, False),
    ],
)
def test_match_decision_table(match: Match, who: Identity, matches: bool) -> None:
    assert match.matches(who) is matches


@pytest.mark.parametrize(
    ("listener_policy", "default_policy", "expected"),
    [
        ("fallback", "default", "fallback"),  # the listener's policy first
        (None, "default", "default"),  # then the default (flags)
        (None, None, None),  # then none: every request refused
    ],
)
def test_without_a_matching_rule_the_listener_then_the_default_decides(
    listener_policy: str | None, default_policy: str | None, expected: str | None
) -> None:
    config = Config(
        listeners=(ListenerSpec("local", "unix", "/run/a.sock", policy=listener_policy),),
        policies={},
        identities=(Selection(Match(uid=frozenset({0})), "root-only"),),
        default_policy=default_policy,
    )
    assert config.select(ALICE)[0] == expected
    assert config.select(ROOT)[0] == "root-only"


def test_only_the_rule_that_matched_sets_the_tenant() -> None:
    config = _config(
        Selection(Match(subject=("CN=runner-*",)), "ci", tenant="runners"),
        Selection(Match(uid=frozenset({1001})), "own"),
    )
    name, who = config.select(RUNNER)
    assert (name, who.tenant, who.owner) == ("ci", "runners", "runners")
    assert who.subject == RUNNER.subject  # the rest of the identity is kept
    name, who = config.select(ALICE)
    assert (name, who.owner) == ("own", "uid:1001")
    assert config.select(Identity("remote", subject="CN=other"))[1].owner == "cert:CN=other"
