"""Decide stage: normalised request -> decision, under the shipped default policy."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sockproxy.checks import Context
from sockproxy.model import (
    BuildSpec,
    ContainerSpec,
    Device,
    ExecSpec,
    HostFile,
    Mount,
    Namespace,
    NamespaceMode,
    PluginSpec,
    Request,
    VolumeSpec,
)
from sockproxy.policy import Policy, evaluate, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def default() -> Policy:
    return load_policy(str(POLICIES / "default.yaml"))


def create(**fields: object) -> Request:
    return Request("container.create", "container", containers=(ContainerSpec(**fields),))  # type: ignore[arg-type]


def bind(source: str, target: str = "/data", *options: str) -> Mount:
    return Mount("bind", source, target, False, options, "HostConfig.Binds[0]")


def ns(kind: str, mode: NamespaceMode, target: str = "") -> Namespace:
    return Namespace(kind, mode, target, f"HostConfig.{kind}Mode")


ALLOWED = {
    "plain container": create(),
    "named volume": create(mounts=(Mount("volume", "cache", "/cache", False, (), "Mounts[0]"),)),
    "bind under /srv": create(mounts=(bind("/srv/app"),)),
    "bind under /home": create(mounts=(bind("/home/ci/work", "/w", "ro"),)),
    "default capability": create(cap_add=("NET_BIND_SERVICE",)),
    "cap drop": create(cap_drop=("ALL",)),
    "no-new-privileges": create(security_opt=("no-new-privileges",)),
    "private pid": create(namespaces=(ns("pid", NamespaceMode.PRIVATE),)),
    "safe sysctl": create(sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),)),
    "runc": create(runtime="runc"),
    "tmpfs": create(mounts=(Mount("tmpfs", "", "/run", False, (), "HostConfig.Tmpfs"),)),
    "exec as root (check off)": Request("exec.create", "exec", exec=ExecSpec(user="root")),
    "volume with plain driver opts": Request(
        "volume.create", "volume", volume=VolumeSpec("v", "local", (("type", "tmpfs"),))
    ),
    "build without host network": Request("build.image", "build", build=BuildSpec("bridge")),
    "ping": Request("system.ping", "system"),
}


@pytest.mark.parametrize("request_", ALLOWED.values(), ids=ALLOWED.keys())
def test_ordinary_requests_are_allowed(default: Policy, request_: Request) -> None:
    decision = evaluate(default, request_)
    assert decision.allowed, decision.reason


DENIED = {
    "privileged": (create(privileged=True), "no-privileged"),
    "privileged exec": (
        Request("exec.create", "exec", exec=ExecSpec(privileged=True)),
        "no-privileged",
    ),
    "bind of /": (create(mounts=(bind("/"),)), "bind-mount-paths"),
    "bind of /etc": (create(mounts=(bind("/etc"),)), "bind-mount-paths"),
    "dot-dot escape": (create(mounts=(bind("/srv/../etc"),)), "bind-mount-paths"),
    "double slash": (create(mounts=(bind("//etc//"),)), "bind-mount-paths"),
    "string prefix is not a parent": (create(mounts=(bind("/srv2/x"),)), "bind-mount-paths"),
    "relative source": (create(mounts=(bind("srv/x"),)), "bind-mount-paths"),
    "ssh keys": (create(mounts=(bind("/home/ci/.ssh"),)), "bind-mount-paths"),
    "podman storage": (
        create(mounts=(bind("/home/ci/.local/share/containers/storage"),)),
        "bind-mount-paths",
    ),
    "X11 socket dir": (create(mounts=(bind("/tmp/.X11-unix"),)), "bind-mount-paths"),
    "glob mount": (
        create(mounts=(Mount("glob", "/etc/*", "/e", False, (), "mounts[0]"),)),
        "bind-mount-paths",
    ),
    "docker socket": (create(mounts=(bind("/var/run/docker.sock"),)), "bind-mount-paths"),
    "volume that binds /": (
        create(
            mounts=(
                Mount(
                    "volume",
                    "v",
                    "/h",
                    False,
                    (),
                    "HostConfig.Mounts[0]",
                    "local",
                    (("type", "none"), ("o", "bind"), ("device", "/")),
                ),
            )
        ),
        "bind-mount-paths",
    ),
    "volume create binding /": (
        Request("volume.create", "volume", volume=VolumeSpec("v", "local", (), "/")),
        "bind-mount-paths",
    ),
    "device": (
        create(devices=(Device("/dev/sda", "/dev/sda", "rwm", "Devices[0]"),)),
        "no-devices",
    ),
    "gpu request": (create(device_requests=("driver=nvidia count=-1",)), "no-devices"),
    "device cgroup rule": (create(device_cgroup_rules=("b 8:* rwm",)), "no-devices"),
    "SYS_ADMIN": (create(cap_add=("SYS_ADMIN",)), "default-capabilities"),
    "ALL caps": (create(cap_add=("ALL",)), "default-capabilities"),
    "seccomp unconfined": (create(security_opt=("seccomp=unconfined",)), "confined"),
    "apparmor unconfined": (create(security_opt=("apparmor=unconfined",)), "confined"),
    "selinux disabled": (create(security_opt=("label=disable",)), "confined"),
    "custom seccomp profile": (
        create(security_opt=('seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',)),
        "confined",
    ),
    "systempaths": (create(security_opt=("systempaths=unconfined",)), "confined"),
    "pid host": (create(namespaces=(ns("pid", NamespaceMode.HOST),)), "no-host-namespaces"),
    "net host": (create(namespaces=(ns("net", NamespaceMode.HOST),)), "no-host-namespaces"),
    "userns host": (create(namespaces=(ns("user", NamespaceMode.HOST),)), "no-host-namespaces"),
    "bind of all of /tmp (X11 and agent sockets below)": (
        create(mounts=(bind("/tmp"),)),
        "bind-mount-paths",
    ),
    "join another container's net": (
        create(namespaces=(ns("net", NamespaceMode.CONTAINER, "db"),)),
        "no-host-namespaces",
    ),
    "ns by path": (
        create(namespaces=(ns("net", NamespaceMode.PATH, "/proc/1/ns/net"),)),
        "no-host-namespaces",
    ),
    "kernel sysctl": (create(sysctls=(("kernel.core_pattern", "|/x"),)), "safe-sysctls"),
    "unmask /proc": (create(unmasked_paths=("/proc/kcore",)), "masked-paths"),
    "masked paths replaced": (create(masked_paths_override=True), "masked-paths"),
    "odd runtime": (create(runtime="/usr/local/bin/evil"), "known-runtimes"),
    "cgroup parent": (create(cgroup_parent="/"), "no-cgroup-parent"),
    "oci hook annotation": (
        create(annotations=(("run.oci.hooks.prestart", "x"),)),
        "no-runtime-annotations",
    ),
    "systemd property": (
        create(annotations=(("org.systemd.property.ExecStartPre", "x"),)),
        "no-runtime-annotations",
    ),
    "container id file": (
        create(
            host_files=(
                HostFile("/etc/cron.d/x", "container-id-file", "HostConfig.ContainerIDFile"),
            )
        ),
        "no-host-files",
    ),
    "upperdir": (create(mounts=(bind("/srv/x", "/x", "upperdir=/etc"),)), "safe-mount-options"),
    "shared propagation": (create(mounts=(bind("/srv/x", "/x", "rshared"),)), "safe-mount-options"),
    "build on host network": (
        Request("image.build", "build", build=BuildSpec("host")),
        "no-build-host-access",
    ),
    "unknown endpoint": (Request("unknown", "unknown"), "endpoint-not-recognised"),
    "section not allowed": (Request("swarm.init", "swarm"), "operation-not-allowed"),
}


@pytest.mark.parametrize(("request_", "rule"), DENIED.values(), ids=DENIED.keys())
def test_host_access_is_refused_naming_the_rule(
    default: Policy, request_: Request, rule: str
) -> None:
    decision = evaluate(default, request_)
    assert not decision.allowed
    assert decision.rule == rule
    assert decision.reason.startswith("sockproxy: ")
    assert decision.reason.endswith(f"(rule {rule}, policy default)")


def test_symlink_into_an_allowed_dir_is_followed(default: Policy, tmp_path: Path) -> None:
    link = Path("/tmp") / f"sp-link-{os.getpid()}"
    link.symlink_to("/etc")
    try:
        decision = evaluate(default, create(mounts=(bind(str(link)),)))
    finally:
        link.unlink()
    assert decision.rule == "bind-mount-paths"
    assert "-> /etc" in decision.reason


@pytest.fixture
def socket_in_tmp() -> Iterator[Path]:
    directory = Path(f"/tmp/sp-sock-{os.getpid()}")
    directory.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(directory / "engine.sock"))
    yield directory
    sock.close()
    (directory / "engine.sock").unlink()
    directory.rmdir()


def test_a_socket_file_or_its_directory_is_never_mounted(
    default: Policy, socket_in_tmp: Path
) -> None:
    for source in (socket_in_tmp / "engine.sock", socket_in_tmp):
        request = create(mounts=(bind(str(source)),))
        own = replace(default, context=Context((str(socket_in_tmp / "engine.sock"),)))
        decision = evaluate(own, request)
        assert decision.rule == "no-engine-socket", decision.reason


def test_plugin_privileges_are_refused_where_plugins_are_allowed(default: Policy) -> None:
    plugins = replace(default, sections=default.sections | {"plugin"})
    request = Request("plugin.pull", "plugin", plugin=PluginSpec(("network: host",)))
    assert evaluate(plugins, request).rule == "no-plugin-privileges"
    assert evaluate(default, request).rule == "operation-not-allowed"


def test_warn_mode_allows_and_reports(default: Policy) -> None:
    permissive = load_policy(str(POLICIES / "permissive.yaml"))
    decision = evaluate(permissive, create(privileged=True, mounts=(bind("/"),)))
    assert decision.allowed
    assert {w.rule for w in decision.warnings} >= {"no-privileged", "bind-mount-paths"}


def test_every_spec_field_of_a_request_reaches_the_checks() -> None:
    """A new Request field that has_specs forgets would silently skip every check."""
    import dataclasses

    spec_fields = {f.name for f in dataclasses.fields(Request)} - {"operation", "section", "notes"}
    for name in spec_fields:
        value = {"containers": (ContainerSpec(),), "image_refs": (("fromImage", "x"),)}.get(
            name, object()
        )
        assert Request("container.create", "container", **{name: value}).has_specs, name


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (Request("image.pull", "image", image_refs=(("reference", "dir:/etc"),)), "dir:"),
        (
            Request("image.push", "image", image_refs=(("destination", "oci-archive:/x.tar"),)),
            "oci-archive:",
        ),
        (
            Request("image.import", "image", image_refs=(("fromSrc", "/root/secret.tar"),)),
            "import from /root/secret.tar",
        ),
        (create(image="docker-daemon:alpine"), "docker-daemon:"),
        (
            create(mounts=(Mount("image", "containers-storage:x", "/i", False, (), "mounts[0]"),)),
            "containers-storage:",
        ),
    ],
    ids=[
        "pull from dir",
        "push to host archive",
        "import host file",
        "run from another engine",
        "image mount from storage",
    ],
)
def test_image_transports_that_reach_the_host_are_refused(
    default: Policy, request_: Request, fragment: str
) -> None:
    decision = evaluate(default, request_)
    assert decision.rule == "registry-images-only"
    assert fragment in decision.reason


@pytest.mark.parametrize(
    "reference",
    [
        "busybox",
        "localhost:5000/a/b:tag",
        "docker://quay.io/x/y",
        "127.0.0.1:5000/x",
        "-",
        "https://example.com/rootfs.tar",
    ],
)
def test_registry_references_pass(default: Policy, reference: str) -> None:
    parameter = "fromSrc" if reference in ("-",) or reference.startswith("https") else "fromImage"
    request = Request("image.pull", "image", image_refs=((parameter, reference),))
    assert evaluate(default, request).allowed


@pytest.mark.parametrize(("engine", "allowed"), [("docker", True), ("podman", False), ("", False)])
def test_build_without_network_isolation_is_host_network_only_on_podman(
    default: Policy, engine: str, allowed: bool
) -> None:
    """Podman runs RUN steps in the host network when nsoptions is absent; Docker doesn't.
    An engine sockproxy could not identify gets the stricter reading."""
    from sockproxy.model import PODMAN_DEFAULT_NETWORK

    policy = replace(default, context=Context(engine=engine))
    request = Request("build.image", "build", build=BuildSpec(PODMAN_DEFAULT_NETWORK))
    assert evaluate(policy, request).allowed is allowed
