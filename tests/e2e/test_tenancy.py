"""Who is calling, end to end: one sockproxy with a configuration file in
front of a real engine, used by several Unix users (created here), a TLS
client with a certificate, and a container given a nested socket.

* alice and bob share the tenant policy (default.yaml + ownership isolation
  + nested sockets): each sees and touches only what they created;
* carol is in the group ``sp-admins``, which the configuration maps to a
  permissive policy;
* a TLS client whose certificate the test's CA signed is a tenant of its
  own; a certificate from another CA, or none, is refused at the handshake;
* a container started with ``-v /var/run/docker.sock:/var/run/docker.sock``
  gets a guarded socket instead: the Docker CLI inside works, under its
  owner's policy, and sees only its owner's containers.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO, Proxy, _remove_dir, _start_proxy, _stop_proxy, short_tmpdir
from .dockercli import DOCKER_CLI, IMAGE, DockerCLI, describe, engines, unique

USERS = ("sp-alice", "sp-bob", "sp-carol")
ADMINS = "sp-admins"


def _ensure_user(name: str, groups: tuple[str, ...] = ()) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--user-group", name], check=True)
    for group in groups:
        subprocess.run(["usermod", "--append", "--groups", group, name], check=True)


@pytest.fixture(scope="session")
def users() -> tuple[str, ...]:
    """Three Unix users; carol is in sp-admins."""
    try:
        grp.getgrnam(ADMINS)
    except KeyError:
        subprocess.run(["groupadd", ADMINS], check=True)
    _ensure_user("sp-alice")
    _ensure_user("sp-bob")
    _ensure_user("sp-carol", (ADMINS,))
    return USERS


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(directory: str, ca: str, name: str, subject: str, *, server: bool = False) -> None:
    """A key and a certificate signed by ``ca`` (files ``name``-key.pem / ``name``.pem)."""
    _openssl("genrsa", "-out", f"{name}-key.pem", "2048", cwd=directory)
    _openssl(
        "req", "-new", "-key", f"{name}-key.pem", "-subj", subject, "-out", f"{name}.csr",
        cwd=directory,
    )  # fmt: skip
    ext = Path(directory, f"{name}.ext")
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip


def _ca(directory: str, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem",
        "-subj", f"/CN={name}", "-days", "2", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cert_dir(base: str, client: str) -> str:
    """A DOCKER_CERT_PATH directory: ca.pem, cert.pem, key.pem."""
    path = os.path.join(base, f"client-{client}")
    os.makedirs(path)
    shutil.copy(os.path.join(base, "ca.pem"), os.path.join(path, "ca.pem"))
    shutil.copy(os.path.join(base, f"{client}.pem"), os.path.join(path, "cert.pem"))
    shutil.copy(os.path.join(base, f"{client}-key.pem"), os.path.join(path, "key.pem"))
    return path


@dataclass
class Site:
    """The shared CI host: the proxy, the people and the TLS client."""

    proxy: Proxy
    cli: dict[str, DockerCLI]  # per user, and "tls" / "stranger" for the TLS clients
    tls_address: str
    workdir: str
    bin_dir: str  # holds a copy of the Docker CLI, bind-mountable (under /tmp)


@pytest.fixture(scope="session")
def site(
    engine: engines.Engine, users: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    workdir = short_tmpdir("spt-")
    os.chmod(workdir, 0o755)
    certs = os.path.join(workdir, "certs")
    os.makedirs(certs)
    _ca(certs, "ca")
    _issue(certs, "ca", "server", "/CN=localhost", server=True)
    _issue(certs, "ca", "runner", "/O=example/CN=ci-runner-1")
    _ca(certs, "rogue")
    _issue(certs, "rogue", "stranger", "/CN=ci-runner-2")
    port = _free_port()
    tenant = Path(workdir, "tenant.yaml")
    tenant.write_text(
        "name: tenant\n"
        f"extends: {REPO / 'policies' / 'default.yaml'}\n"
        "isolation: true\n"
        "nested-socket: same\n"
    )
    sock = os.path.join(workdir, "docker.sock")
    config = Path(workdir, "sockproxy.yaml")
    config.write_text(
        f"upstream: unix://{engine.socket}\n"
        "policies:\n"
        "  tenant: tenant.yaml\n"
        f"  admin: {REPO / 'policies' / 'permissive.yaml'}\n"
        "listeners:\n"
        "  - name: local\n"
        f"    unix: {sock}\n"
        '    mode: "0666"\n'
        "    policy: tenant\n"
        "  - name: remote\n"
        f"    tcp: 127.0.0.1:{port}\n"
        "    tls: {cert: certs/server.pem, key: certs/server-key.pem, client-ca: certs/ca.pem}\n"
        "identities:\n"
        f"  - match: {{group: {ADMINS}}}\n"
        "    policy: admin\n"
        '  - match: {subject: "CN=ci-runner-*"}\n'
        "    policy: tenant\n"
        "nested-sockets: nested\n"
    )
    bin_dir = os.path.join(workdir, "bin")
    os.makedirs(bin_dir)
    shutil.copy(DOCKER_CLI, os.path.join(bin_dir, "docker"))
    os.chmod(bin_dir, 0o755)
    proxy = _start_proxy(
        engine,
        tmp_path_factory.mktemp(f"tenancy-{engine.kind}"),
        config=(str(config), sock, 0o666),
    )
    cli: dict[str, DockerCLI] = {}
    for user in users:
        home = os.path.join(workdir, f"home-{user}")
        os.makedirs(home)
        shutil.chown(home, user, user)
        cli[user] = DockerCLI(sock, home, user=user)
    tls_env = {"DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1"}
    for name, client in (("tls", "runner"), ("stranger", "stranger")):
        path = _cert_dir(certs, client)
        cli[name] = _TLSCLI(sock, path, env_extra={**tls_env, "DOCKER_CERT_PATH": path})
    try:
        yield Site(proxy, cli, f"127.0.0.1:{port}", workdir, bin_dir)
    finally:
        for user_cli in cli.values():
            ids = user_cli("ps", "-aq").stdout.split()
            if ids:
                user_cli("rm", "-f", *ids)
        try:
            _stop_proxy(proxy)
        finally:
            _remove_dir(proxy.workdir)
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class _TLSCLI(DockerCLI):
    """The Docker CLI over TCP with TLS client certificates."""

    env_extra: dict[str, str] | None = None

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(extra)
        env.update(self.env_extra or {})
        return env


def _refused(res: subprocess.CompletedProcess[str], text: str) -> None:
    assert res.returncode != 0, describe(res)
    assert text in res.stderr, describe(res)


def _events(proxy: Proxy) -> list[dict[str, object]]:
    events = []
    for line in Path(proxy.log).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "request":
                events.append(event)
    return events


def test_each_user_sees_and_touches_only_their_own_containers(site: Site) -> None:
    alice, bob = site.cli["sp-alice"], site.cli["sp-bob"]
    name = unique("alice")
    alice.ok("run", "-d", "--name", name, IMAGE, "sleep", "300")
    bob_name = unique("bob")
    bob.ok("run", "-d", "--name", bob_name, IMAGE, "sleep", "300")

    assert name in alice.ok("ps", "--format", "{{.Names}}")
    assert name not in bob.ok("ps", "-a", "--format", "{{.Names}}")
    assert bob_name in bob.ok("ps", "--format", "{{.Names}}")
    assert bob_name not in alice.ok("ps", "-a", "--format", "{{.Names}}")
    for attempt in (
        ("inspect", "--type", "container", name),
        ("logs", name),
        ("exec", name, "true"),
        ("stop", "-t", "0", name),
        ("kill", name),
        ("rm", name),
        ("cp", f"{name}:/etc/hostname", "-"),
        ("rename", name, unique("stolen")),
        ("top", name),
        ("commit", name),
        ("export", name),
        ("attach", "--no-stdin", name),
    ):
        _refused(bob(*attempt, timeout=20), f"No such container: {name}")
    # rm -f succeeds on a missing container, as it does on the engine itself.
    assert f"No such container: {name}" in bob("rm", "-f", name).stderr
    # Nothing of it reached the engine: alice's container still runs, unrenamed.
    assert name in alice.ok("ps", "--format", "{{.Names}}")
    assert alice.ok("exec", name, "echo", "mine").strip() == "mine"
    alice.ok("rm", "-f", name)


def test_the_owner_label_cannot_be_forged(site: Site) -> None:
    """A label naming someone else is overwritten with the caller's own."""
    alice, bob = site.cli["sp-alice"], site.cli["sp-bob"]
    alice_uid = pwd.getpwnam("sp-alice").pw_uid
    name = unique("forged")
    bob.ok("create", "--name", name, "--label", f"sockproxy.owner=uid:{alice_uid}", IMAGE, "true")
    assert name not in alice.ok("ps", "-a", "--format", "{{.Names}}")
    label = bob.ok("inspect", "--format", '{{index .Config.Labels "sockproxy.owner"}}', name)
    assert label.strip() == f"uid:{pwd.getpwnam('sp-bob').pw_uid}"
    bob.ok("rm", name)


def test_volumes_and_networks_are_owned_too(site: Site) -> None:
    alice, bob = site.cli["sp-alice"], site.cli["sp-bob"]
    volume, network = unique("vol"), unique("net")
    alice.ok("volume", "create", volume)
    alice.ok("network", "create", network)
    try:
        assert volume in alice.ok("volume", "ls", "--format", "{{.Name}}")
        assert volume not in bob.ok("volume", "ls", "--format", "{{.Name}}")
        assert network not in bob.ok("network", "ls", "--format", "{{.Name}}")
        _refused(bob("volume", "rm", volume), "no such volume")
        _refused(bob("volume", "inspect", volume), "no such volume")
        _refused(bob("network", "rm", network), "not found")
        _refused(bob("run", "--rm", "-v", f"{volume}:/data", IMAGE, "true"), "no such volume")
        _refused(bob("run", "--rm", "--network", network, IMAGE, "true"), "not found")
        # A named volume that doesn't exist yet is made for its owner.
        fresh = unique("fresh")
        alice.ok("run", "--rm", "-v", f"{fresh}:/data", IMAGE, "true")
        assert fresh in alice.ok("volume", "ls", "--format", "{{.Name}}")
        assert fresh not in bob.ok("volume", "ls", "--format", "{{.Name}}")
        alice.ok("volume", "rm", fresh)
    finally:
        alice("volume", "rm", volume)
        alice("network", "rm", network)


def test_events_show_each_user_only_their_own(site: Site) -> None:
    alice, bob = site.cli["sp-alice"], site.cli["sp-bob"]
    start = str(int(time.time()) - 1)
    name = unique("evt")
    alice.ok("run", "--rm", "--name", name, IMAGE, "true")
    until = str(int(time.time()) + 1)
    seen_by_alice = alice.ok("events", "--since", start, "--until", until, timeout=30)
    seen_by_bob = bob.ok("events", "--since", start, "--until", until, timeout=30)
    assert name in seen_by_alice
    assert name not in seen_by_bob


def test_a_group_maps_to_a_different_policy(site: Site) -> None:
    """carol (group sp-admins) gets the permissive policy; alice the tenant one."""
    host_file = ("run", "--rm", "-v", "/etc/hostname:/h:ro", IMAGE, "cat", "/h")
    _refused(site.cli["sp-alice"](*host_file), "rule bind-mount-paths")
    assert site.cli["sp-carol"].ok(*host_file).strip()
    events = _events(site.proxy)
    carol = [e for e in events if e.get("user") == "sp-carol"]
    assert carol
    assert all(e["policy"] == "permissive" for e in carol)
    assert all(ADMINS in e["groups"] for e in carol)  # type: ignore[operator]
    alice = [e for e in events if e.get("user") == "sp-alice"]
    assert alice
    assert all(e["policy"] == "tenant" and e["process"] == "docker" for e in alice)


def test_tls_listener_accepts_a_known_client_and_refuses_others(site: Site) -> None:
    runner = site.cli["tls"]
    assert runner.ok("version", "--format", "{{.Server.Version}}").strip()
    name = unique("tls")
    runner.ok("run", "-d", "--name", name, IMAGE, "sleep", "60")
    assert name in runner.ok("ps", "--format", "{{.Names}}")
    assert name not in site.cli["sp-alice"].ok("ps", "-a", "--format", "{{.Names}}")
    runner.ok("rm", "-f", name)
    subjects = {e.get("subject") for e in _events(site.proxy) if e.get("listener") == "remote"}
    assert "CN=ci-runner-1,O=example" in subjects
    # A certificate from another CA: the handshake fails, nothing is answered.
    stranger = site.cli["stranger"]("version", "--format", "{{.Server.Version}}", timeout=20)
    assert stranger.returncode != 0, describe(stranger)
    assert not stranger.stdout.strip(), describe(stranger)
    assert "error during connect" in stranger.stderr, describe(stranger)
    # No certificate at all: refused the same way.
    bare = _TLSCLI(
        site.proxy.socket,
        tempfile.mkdtemp(dir=site.workdir),  # no certificates in it
        env_extra={"DOCKER_HOST": f"tcp://{site.tls_address}", "DOCKER_TLS": "1"},
    )("version", "--format", "{{.Server.Version}}", timeout=20)
    assert bare.returncode != 0, describe(bare)
    assert not bare.stdout.strip(), describe(bare)
    subjects = {e.get("subject") for e in _events(site.proxy) if e.get("listener") == "remote"}
    assert subjects == {"CN=ci-runner-1,O=example"}  # nobody else got a request through


def test_a_nested_socket_keeps_the_container_inside_its_owners_fence(site: Site) -> None:
    alice, bob = site.cli["sp-alice"], site.cli["sp-bob"]
    mine, theirs = unique("mine"), unique("theirs")
    alice.ok("run", "-d", "--name", mine, IMAGE, "sleep", "120")
    bob.ok("run", "-d", "--name", theirs, IMAGE, "sleep", "120")
    script = (
        "set -u; D='/cli/docker -H unix:///var/run/docker.sock';"
        "$D ps --format '{{.Names}}';"
        f"$D run --rm {IMAGE} echo nested-run-ok;"
        f"$D run --rm --privileged {IMAGE} true; echo privileged=$?;"
        f"$D inspect --type container {theirs} >/dev/null; echo theirs=$?"
    )
    out = alice.ok(
        "run", "--rm",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{site.bin_dir}:/cli:ro",
        IMAGE, "sh", "-c", script,
        timeout=120,
    )  # fmt: skip
    assert mine in out.split()
    assert theirs not in out
    assert "nested-run-ok" in out
    assert "privileged=125" in out  # refused inside, by the same policy
    assert "theirs=1" in out
    nested = [e for e in _events(site.proxy) if str(e.get("listener", "")).endswith("/nested")]
    assert nested
    assert all(e["user"] == "sp-alice" for e in nested)
    assert any(e.get("rule") == "no-privileged" for e in nested)
    alice.ok("rm", "-f", mine)
    bob.ok("rm", "-f", theirs)


def test_a_client_cannot_name_a_nested_socket_itself(site: Site) -> None:
    """Nested sockets exist only as sockproxy's rewrite: bob binding alice's
    (or the directory that holds them) is refused."""
    site.cli["sp-alice"].ok("run", "--rm", "-v", "/run/docker.sock:/s", IMAGE, "test", "-S", "/s")
    nested_dir = os.path.join(site.workdir, "nested")
    sockets = [os.path.join(nested_dir, f) for f in os.listdir(nested_dir)]
    assert sockets
    for target in (*sockets, nested_dir, site.workdir):
        res = site.cli["sp-bob"]("run", "--rm", "-v", f"{target}:/s", IMAGE, "true")
        _refused(res, "rule no-engine-socket")
