"""Normalise stage, libpod bodies: SpecGenerator, PodSpecGenerator, volumes, builds.

Decision-free tables: (body, expected normalised fields), in the shape
podman-remote 4.3 sends.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from sockproxy.jsonread import AmbiguousBody, InvalidBody
from sockproxy.model import (
    ContainerSpec,
    Device,
    HostFile,
    Mount,
    Namespace,
    NamespaceMode,
)
from sockproxy.normalize import normalize
from sockproxy.normalize.build import PODMAN_DEFAULT_NETWORK

HOST = NamespaceMode.HOST


def _spec(kind: str, body: Any) -> ContainerSpec:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = normalize("container.create", "container", kind, "", payload)
    (spec,) = request.containers
    return spec


def _fields(spec: object, expected: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in expected}


# What `podman --remote run --privileged -v /:/host --device /dev/sda --cap-add
# SYS_ADMIN --pid host --security-opt seccomp=unconfined alpine sh` sends (4.3).
REMOTE_RUN = {
    "name": "",
    "pod": "",
    "image": "alpine",
    "raw_image_name": "alpine",
    "command": ["sh"],
    "env": {},
    "terminal": False,
    "stdin": False,
    "labels": {},
    "annotations": {},
    "stop_signal": 15,
    "log_configuration": {"driver": ""},
    "pidns": {"nsmode": "host"},
    "utsns": {"nsmode": ""},
    "containerCreateCommand": ["podman", "run", "--privileged", "alpine", "sh"],
    "init_container_type": "",
    "mounts": [{"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]}],
    "volumes": [],
    "image_volume_mode": "anonymous",
    "devices": [{"path": "/dev/sda"}],
    "privileged": True,
    "cap_add": ["CAP_SYS_ADMIN"],
    "seccomp_profile_path": "unconfined",
    "userns": {"nsmode": ""},
    "ipcns": {"nsmode": ""},
    "netns": {"nsmode": "bridge"},
    "cgroupns": {"nsmode": ""},
    "use_image_hosts": False,
    "Networks": {},
}

CONTAINER_ROWS: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "podman run --privileged -v /:/host --device --cap-add --pid host --security-opt",
        REMOTE_RUN,
        {
            "privileged": True,
            "mounts": (Mount("bind", "/", "/host", False, ("rbind",), "mounts[0]"),),
            "devices": (Device("/dev/sda", "/dev/sda", "rwm", "devices[0]"),),
            "cap_add": ("SYS_ADMIN",),
            "security_opt": ("seccomp=unconfined",),
            "namespaces": (
                Namespace("pid", HOST, "host", "pidns"),
                Namespace("net", NamespaceMode.PRIVATE, "bridge", "netns"),
            ),
            "host_files": (),
        },
    ),
    (
        "mount types: glob, devpts, tmpfs, an OCI sysfs and an overlay of host layers",
        {
            "mounts": [
                {"destination": "/g", "type": "glob", "source": "/dev/sd*"},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["rw"]},
                {"destination": "/s", "type": "sysfs", "source": "sysfs", "options": ["rw"]},
                {
                    "destination": "/o",
                    "type": "overlay",
                    "source": "overlay",
                    "options": ["lowerdir=/etc:/usr", "upperdir=/var/u", "workdir=/var/w"],
                },
                {"destination": "/r", "type": "ext4", "source": "../disk.img", "options": ["ro"]},
            ]
        },
        {
            "mounts": (
                Mount("glob", "/dev/sd*", "/g", False, (), "mounts[0]"),
                Mount("devpts", "devpts", "/dev/pts", False, (), "mounts[1]"),
                Mount("tmpfs", "tmpfs", "/t", False, ("rw",), "mounts[2]"),
                Mount("bind", "/sys", "/s", False, ("rw",), "mounts[3]"),
                Mount(
                    "bind",
                    "/",
                    "/o",
                    False,
                    ("lowerdir=/etc:/usr", "upperdir=/var/u", "workdir=/var/w"),
                    "mounts[4]",
                ),
                Mount("bind", "../disk.img", "/r", True, ("ro",), "mounts[5]"),
            ),
        },
    ),
    (
        "named, image and overlay volumes; the rootfs is a host directory",
        {
            "volumes": [{"Name": "data", "Dest": "/data", "Options": ["ro"]}],
            "image_volumes": [{"Source": "busybox", "Destination": "/i", "ReadWrite": True}],
            "overlay_volumes": [
                {"destination": "/o", "source": "/home", "options": ["upperdir=/u", "workdir=/w"]}
            ],
            "rootfs": "/srv/root",
            "rootfs_overlay": True,
            "volumes_from": ["db:ro"],
        },
        {
            "mounts": (
                Mount("volume", "data", "/data", True, ("ro",), "volumes[0]"),
                Mount("image", "busybox", "/i", False, (), "image_volumes[0]"),
                Mount(
                    "bind",
                    "/home",
                    "/o",
                    False,
                    ("O", "upperdir=/u", "workdir=/w"),
                    "overlay_volumes[0]",
                ),
                Mount("bind", "/srv/root", "/", False, ("rootfs-overlay",), "rootfs"),
            ),
            "volumes_from": ("db:ro",),
        },
    ),
    (
        "devices: src:dst:perm paths, inherited devices, cgroup rules",
        {
            "devices": [{"path": "/dev/sda:/dev/xvda:rw"}],
            "host_device_list": [{"path": "/dev/mem"}],
            "devices_from": ["other"],
            "device_cgroup_rule": [{"allow": True, "type": "c", "major": 10, "access": "rwm"}],
            "resource_limits": {"devices": [{"allow": True, "access": "rwm"}]},
        },
        {
            "devices": (
                Device("/dev/sda", "/dev/xvda", "rw", "devices[0]"),
                Device("/dev/mem", "/dev/mem", "rwm", "host_device_list[0]"),
            ),
            "device_requests": ("devices of container other",),
            "device_cgroup_rules": ("a *:* rwm", "c 10:* rwm"),
        },
    ),
    (
        "security fields in SecurityOpt spelling; seccomp path and unmask",
        {
            "selinux_opts": ["disable", "type:spc_t"],
            "apparmor_profile": "unconfined",
            "seccomp_profile_path": "/etc/containers/weak.json",
            "seccomp_policy": "image",
            "no_new_privileges": True,
            "procfs_opts": ["hidepid=0"],
            "mask": ["/x"],
            "unmask": ["ALL"],
            "rootfs_propagation": "shared",
            "cap_drop": ["chown"],
        },
        {
            "security_opt": (
                "label=disable",
                "label=type:spc_t",
                "apparmor=unconfined",
                "seccomp=/etc/containers/weak.json",
                "seccomp-policy=image",
                "no-new-privileges=true",
                "proc-opts=hidepid=0",
                "mask=/x",
                "unmask=ALL",
                "rootfs-propagation=shared",
            ),
            "unmasked_paths": ("ALL",),
            "cap_drop": ("CHOWN",),
            "host_files": (
                HostFile("/etc/containers/weak.json", "seccomp-profile", "seccomp_profile_path"),
            ),
        },
    ),
    (
        "namespace objects: path, container, pod, slirp4netns with host loopback",
        {
            "pidns": {"nsmode": "path", "value": "/proc/1/ns/pid"},
            "ipcns": {"nsmode": "container", "value": "db"},
            "utsns": {"nsmode": "pod"},
            "userns": {"nsmode": "keep-id"},
            "cgroupns": {"nsmode": "private"},
            "netns": {"nsmode": "slirp4netns"},
            "network_options": {"slirp4netns": ["allow_host_loopback=true"]},
        },
        {
            "namespaces": (
                Namespace("pid", NamespaceMode.PATH, "/proc/1/ns/pid", "pidns"),
                Namespace("ipc", NamespaceMode.CONTAINER, "db", "ipcns"),
                Namespace(
                    "net", NamespaceMode.OTHER, "slirp4netns:allow_host_loopback=true", "netns"
                ),
                Namespace("uts", NamespaceMode.OTHER, "pod", "utsns"),
                Namespace("user", NamespaceMode.OTHER, "keep-id", "userns"),
                Namespace("cgroup", NamespaceMode.PRIVATE, "private", "cgroupns"),
            ),
        },
    ),
    (
        "sysctls, runtime, cgroup parent, annotations, user",
        {
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
            "oci_runtime": "/tmp/evil-runtime",
            "cgroup_parent": "/system.slice",
            "annotations": {"run.oci.hooks.stdout": "/tmp/x"},
            "user": "root",
        },
        {
            "sysctls": (("net.ipv4.ip_unprivileged_port_start", "0"),),
            "runtime": "/tmp/evil-runtime",
            "cgroup_parent": "/system.slice",
            "annotations": (("run.oci.hooks.stdout", "/tmp/x"),),
            "user": "root",
        },
    ),
    (
        "host files the engine writes or reads",
        {
            "log_configuration": {"driver": "k8s-file", "path": "/etc/cron.d/x"},
            "init": True,
            "init_path": "/tmp/init",
            "conmon_pid_file": "/etc/passwd",
            "base_hosts_file": "/etc/shadow",
        },
        {
            "host_files": (
                HostFile("/etc/cron.d/x", "log-path", "log_configuration.path"),
                HostFile("/tmp/init", "init-path", "init_path"),
                HostFile("/etc/passwd", "conmon-pid-file", "conmon_pid_file"),
                HostFile("/etc/shadow", "hosts-file", "base_hosts_file"),
            ),
        },
    ),
    (
        "a Docker-style key spelling is the same field for json-iterator",
        {"Privileged": True, "Cap_Add": ["NET_ADMIN"]},
        {"privileged": True, "cap_add": ("NET_ADMIN",)},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b, e) for _, b, e in CONTAINER_ROWS],
    ids=[r[0] for r in CONTAINER_ROWS],
)
def test_container_create(body: Any, expected: dict[str, Any]) -> None:
    assert _fields(_spec("libpod-container-create", body), expected) == expected


def test_container_create_notes() -> None:
    body = {"env_host": True, "privileged": False, "hostusers": ["root"]}
    payload = json.dumps(body).encode()
    request = normalize("container.create", "container", "libpod-container-create", "", payload)
    assert {"env_host", "hostusers"} <= set(request.notes)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"privileged": false, "privileged": true}', AmbiguousBody),
        (b'{"privileged": true, "PRIVILEGED": false}', AmbiguousBody),
        (b'{"overlay_volumes": [{"source": "/a", "Source": "/b"}]}', AmbiguousBody),
        (b'{"mounts": [{"type": "overlay", "options": ["lowerdir=rel"]}]}', AmbiguousBody),
        (b'{"privileged": "yes"}', InvalidBody),
        (b'{"devices": [{"path": "/a:/b:rw:x"}]}', InvalidBody),
        (b'{"pidns": "host"}', InvalidBody),
    ],
)
def test_container_create_refused(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        _spec("libpod-container-create", body)


# -- pods -------------------------------------------------------------------------------

POD_ROWS: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "podman pod create --network host --pid host --share ipc,net,uts",
        {
            "name": "p",
            "infra_image": "k8s.gcr.io/pause:3.5",
            "shared_namespaces": ["ipc", "net", "uts"],
            "netns": {"nsmode": "host"},
            "pidns": {"nsmode": "host"},
            "userns": {"nsmode": ""},
            "utsns": {"nsmode": "private"},
        },
        {
            "namespaces": (
                Namespace("pid", HOST, "host", "pidns"),
                Namespace("net", HOST, "host", "netns"),
                Namespace("uts", NamespaceMode.PRIVATE, "private", "utsns"),
            ),
            "origin": "pod create infra container",
        },
    ),
    (
        "pod volumes, devices, sysctls and security options reach every container",
        {
            "mounts": [{"destination": "/h", "type": "bind", "source": "/home"}],
            "volumes": [{"Name": "v", "Dest": "/v"}],
            "pod_devices": ["/dev/kvm"],
            "sysctl": {"kernel.msgmax": "1"},
            "security_opt": ["label=disable", "unmask=ALL", "seccomp=/tmp/p.json"],
            "infra_conmon_pid_file": "/etc/motd",
            "cgroup_parent": "/",
        },
        {
            "mounts": (
                Mount("bind", "/home", "/h", False, (), "mounts[0]"),
                Mount("volume", "v", "/v", False, (), "volumes[0]"),
            ),
            "devices": (Device("/dev/kvm", "/dev/kvm", "rwm", "pod_devices[0]"),),
            "sysctls": (("kernel.msgmax", "1"),),
            "security_opt": ("label=disable", "unmask=ALL", "seccomp=/tmp/p.json"),
            "unmasked_paths": ("ALL",),
            "cgroup_parent": "/",
            "host_files": (
                HostFile("/tmp/p.json", "seccomp-profile", "security_opt[2]"),
                HostFile("/etc/motd", "conmon-pid-file", "infra_conmon_pid_file"),
            ),
        },
    ),
    (
        "container-only fields are not pod fields: the handler drops them",
        {"name": "p", "privileged": True, "cap_add": ["ALL"]},
        {"privileged": False, "cap_add": ()},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in POD_ROWS], ids=[r[0] for r in POD_ROWS]
)
def test_pod_create(body: Any, expected: dict[str, Any]) -> None:
    assert _fields(_spec("libpod-pod-create", body), expected) == expected


# -- volumes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "bind_source"),
    [
        ({"Name": "v", "Driver": "local", "Options": {"type": "bind", "device": "/etc"}}, "/etc"),
        ({"Name": "v", "Options": {"o": "bind", "device": "/root"}}, "/root"),
        ({"Name": "v", "Options": {"device": "/dev/sda1"}}, "/dev/sda1"),
        ({"Name": "v", "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}}, ""),
        ({"Name": "v", "Options": {"o": "uid=1000"}}, ""),
        ({"Name": "v", "Driver": "image", "Options": {"image": "alpine"}}, ""),
        ({"name": "v", "options": {"TYPE": "bind", "DEVICE": "/"}}, "/"),
    ],
)
def test_volume_create(body: dict[str, Any], bind_source: str) -> None:
    request = normalize(
        "volume.create", "volume", "libpod-volume-create", "", json.dumps(body).encode()
    )
    assert request.volume is not None
    assert request.volume.bind_source == bind_source


def test_volume_create_option_in_two_spellings() -> None:
    body = {"Options": {"device": "/tmp", "Device": "/"}}
    with pytest.raises(AmbiguousBody):
        normalize("volume.create", "volume", "libpod-volume-create", "", json.dumps(body).encode())


# -- builds -------------------------------------------------------------------------------


def _q(**params: Any) -> str:
    return "&".join(
        f"{k}={quote(v if isinstance(v, str) else json.dumps(v))}" for k, v in params.items()
    )


BUILD_ROWS: list[tuple[str, str, str, tuple[tuple[str, str], ...]]] = [
    (
        "podman-remote build: no nsoptions, host network",
        _q(t="x", dockerfile=["Containerfile"]),
        PODMAN_DEFAULT_NETWORK,
        (),
    ),
    (
        "nsoptions with a host network",
        _q(nsoptions=[{"Name": "network", "Host": True}]),
        "host",
        (),
    ),
    (
        "nsoptions joining a network namespace by path",
        _q(nsoptions=[{"Name": "network", "Path": "/proc/1/ns/net"}]),
        "ns:/proc/1/ns/net",
        (),
    ),
    (
        "nsoptions with the host pid namespace",
        _q(nsoptions=[{"Name": "network"}, {"Name": "pid", "Host": True}]),
        "",
        (("nsoptions", "pid=host"),),
    ),
    ("chroot isolation", _q(nsoptions=[], isolation="chroot"), "", (("isolation", "chroot"),)),
    (
        "devices, capabilities, volumes",
        _q(nsoptions=[], devices=["/dev/fuse"], addcaps=["cap_sys_admin"], volume=["/:/host"]),
        "",
        (("addcaps", "SYS_ADMIN"), ("devices", "/dev/fuse"), ("volume", "/:/host")),
    ),
    (
        "security options",
        _q(
            nsoptions=[],
            securityopt=["seccomp:unconfined"],
            seccomp="/tmp/p.json",
            apparmor="unconfined",
            labelopts=["disable"],
        ),
        "",
        (
            ("labelopts", "disable"),
            ("securityopt", "seccomp=unconfined"),
            ("seccomp", "/tmp/p.json"),
            ("apparmor", "unconfined"),
        ),
    ),
    (
        "a secret climbing out of the context",
        _q(nsoptions=[], secrets=["id=a,src=../../../etc/shadow", "id=b,src=ok"]),
        "",
        (("secrets", "id=a,src=../../../etc/shadow"),),
    ),
    (
        "a local remote is a host directory",
        _q(nsoptions=[], remote="/etc"),
        "",
        (("remote", "/etc"),),
    ),
    (
        "absolute and climbing Containerfiles",
        _q(nsoptions=[], dockerfile=["/etc/x", "../y", "ok/Containerfile"]),
        "",
        (("dockerfile", "/etc/x"), ("dockerfile", "../y")),
    ),
    (
        "a plain dockerfile name climbing out",
        _q(nsoptions=[], dockerfile="../../etc/passwd"),
        "",
        (("dockerfile", "../../etc/passwd"),),
    ),
    (
        "rusage log file",
        _q(nsoptions=[], rusage="1", rusagelogfile="/etc/cron.d/x"),
        "",
        (("rusagelogfile", "/etc/cron.d/x"),),
    ),
    (
        "a local build context",
        _q(
            nsoptions=[],
            additionalbuildcontexts={
                "a": {"IsURL": False, "IsImage": False, "Value": "/root"},
                "b": {"IsImage": True, "Value": "alpine"},
            },
        ),
        "",
        (("additionalbuildcontexts", "a=/root"),),
    ),
]


@pytest.mark.parametrize(
    ("query", "network_mode", "options"),
    [(q, n, o) for _, q, n, o in BUILD_ROWS],
    ids=[r[0] for r in BUILD_ROWS],
)
def test_libpod_build_query(
    query: str, network_mode: str, options: tuple[tuple[str, str], ...]
) -> None:
    build = normalize("build.image", "build", "", query, None).build
    assert build is not None
    assert (build.network_mode, build.options) == (network_mode, options)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (_q(nsoptions="not json"), InvalidBody),
        (_q(devices={"a": 1}), InvalidBody),
        (_q(nsoptions=[{"Name": "network", "host": True, "Host": False}]), AmbiguousBody),
    ],
)
def test_libpod_build_query_refused(query: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        normalize("build.image", "build", "", query, None)
