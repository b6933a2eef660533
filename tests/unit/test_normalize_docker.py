"""Normalise stage, Docker-shaped bodies: what the engine would do, read as it reads them.

Decision-free tables: (body, expected normalised fields). The bodies take the
shape of what Docker CLI 28 sends; Podman's compat API reads the same bodies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sockproxy.jsonread import AmbiguousBody, InvalidBody
from sockproxy.model import (
    ContainerSpec,
    Device,
    HostFile,
    Mount,
    Namespace,
    NamespaceMode,
    Request,
)
from sockproxy.normalize import normalize
from sockproxy.normalize.binds import parse_bind, parse_device
from sockproxy.normalize.build import PODMAN_DEFAULT_NETWORK
from sockproxy.normalize.caps import normalize as normalize_cap
from sockproxy.normalize.security import split as split_security_opt

HOST = NamespaceMode.HOST


def _bytes(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _create(body: Any) -> ContainerSpec:
    request = normalize("container.create", "container", "container-create", "", _bytes(body))
    (spec,) = request.containers
    return spec


def _fields(spec: object, expected: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in expected}


def _host_config(**fields: Any) -> dict[str, Any]:
    return {"Image": "alpine", "HostConfig": fields}


# What `docker run --privileged -v /:/host --device /dev/sda --cap-add SYS_ADMIN
# --pid host --security-opt seccomp=unconfined alpine sh` sends (Docker CLI 28).
CLI_RUN = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": True,
    "AttachStderr": True,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": ["sh"],
    "Image": "alpine",
    "Volumes": {},
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": {},
    "HostConfig": {
        "Binds": ["/:/host"],
        "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "bridge",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "ConsoleSize": [24, 80],
        "CapAdd": ["SYS_ADMIN"],
        "CapDrop": None,
        "CgroupnsMode": "",
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "",
        "Cgroup": "",
        "Links": None,
        "OomScoreAdj": 0,
        "PidMode": "host",
        "Privileged": True,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": ["seccomp=unconfined"],
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 0,
        "Isolation": "",
        "CpuShares": 0,
        "Memory": 0,
        "NanoCpus": 0,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "Devices": [
            {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}
        ],
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": None,
        "OomKillDisable": False,
        "PidsLimit": None,
        "Ulimits": None,
        "MaskedPaths": None,
        "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": None, "Links": None}}},
}


# -- container create -----------------------------------------------------------------

CREATE_ROWS: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "docker run --privileged -v /:/host --device --cap-add --pid host --security-opt",
        CLI_RUN,
        {
            "privileged": True,
            "mounts": (Mount("bind", "/", "/host", False, (), "HostConfig.Binds[0]"),),
            "devices": (Device("/dev/sda", "/dev/sda", "rwm", "HostConfig.Devices[0]"),),
            "cap_add": ("SYS_ADMIN",),
            "security_opt": ("seccomp=unconfined",),
            "namespaces": (
                Namespace("pid", HOST, "host", "HostConfig.PidMode"),
                Namespace("net", NamespaceMode.PRIVATE, "bridge", "HostConfig.NetworkMode"),
            ),
            "masked_paths_override": False,
            "host_files": (),
        },
    ),
    (
        "keys are read case-insensitively, as Go's encoding/json does",
        {"image": "alpine", "hostconfig": {"privileged": True, "binds": ["/etc:/x:ro,z"]}},
        {
            "privileged": True,
            "mounts": (Mount("bind", "/etc", "/x", True, ("ro", "z"), "HostConfig.Binds[0]"),),
        },
    ),
    (
        "legacy HostConfig fields at the top level are read when HostConfig is absent",
        {"Image": "alpine", "Privileged": True, "Binds": ["/:/h"], "CapAdd": "sys_admin"},
        {
            "privileged": True,
            "mounts": (Mount("bind", "/", "/h", False, (), "Binds[0]"),),
            "cap_add": ("SYS_ADMIN",),
        },
    ),
    (
        "legacy fields are read when HostConfig is null (the wrapper sees no inner config)",
        {"Image": "alpine", "HostConfig": None, "Privileged": True},
        {"privileged": True},
    ),
    (
        "a nested HostConfig wins over top-level fields (runconfig getHostConfig)",
        {"Image": "alpine", "Privileged": True, "HostConfig": {"Privileged": False}},
        {"privileged": False, "mounts": ()},
    ),
    (
        "a top-level VolumeDriver fills an empty nested one (getHostConfig)",
        {"Image": "a", "VolumeDriver": "rex", "HostConfig": {"Binds": ["data:/data"]}},
        {
            "mounts": (Mount("volume", "data", "/data", False, (), "HostConfig.Binds[0]", "rex"),),
        },
    ),
    (
        "Binds: named, anonymous, relative, '.'-prefixed and unclean sources kept raw",
        _host_config(
            Binds=[
                "data:/data:ro",
                "/anon",
                "./rel:/r",
                "..:/up",
                "//etc/../:/root:rw,rshared",
                "/srv:/srv:nocopy",
            ]
        ),
        {
            "mounts": (
                Mount("volume", "data", "/data", True, ("ro",), "HostConfig.Binds[0]"),
                Mount("volume", "", "/anon", False, (), "HostConfig.Binds[1]"),
                Mount("bind", "./rel", "/r", False, (), "HostConfig.Binds[2]"),
                Mount("bind", "..", "/up", False, (), "HostConfig.Binds[3]"),
                Mount(
                    "bind", "//etc/../", "/root", False, ("rw", "rshared"), "HostConfig.Binds[4]"
                ),
                Mount("bind", "/srv", "/srv", False, ("nocopy",), "HostConfig.Binds[5]"),
            ),
        },
    ),
    (
        "Mounts: bind options, propagation and CreateMountpoint",
        _host_config(
            Mounts=[
                {
                    "Type": "bind",
                    "Source": "/var/lib",
                    "Target": "/x",
                    "ReadOnly": True,
                    "BindOptions": {"Propagation": "rshared", "CreateMountpoint": True},
                }
            ]
        ),
        {
            "mounts": (
                Mount(
                    "bind",
                    "/var/lib",
                    "/x",
                    True,
                    ("rshared", "create-mountpoint"),
                    "HostConfig.Mounts[0]",
                ),
            ),
        },
    ),
    (
        "Mounts: a local-driver volume with o=bind,device=PATH is a bind of PATH",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/x",
                    "VolumeOptions": {
                        "DriverConfig": {
                            "Name": "local",
                            "Options": {"type": "none", "o": "bind", "device": "/etc"},
                        }
                    },
                }
            ]
        ),
        {
            "mounts": (
                Mount(
                    "bind",
                    "/etc",
                    "/x",
                    False,
                    ("volume=v",),
                    "HostConfig.Mounts[0]",
                    "local",
                    (("type", "none"), ("o", "bind"), ("device", "/etc")),
                ),
            ),
        },
    ),
    (
        "Mounts: a local-driver volume of a block device is a bind of the device",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "disk",
                    "Target": "/x",
                    "VolumeOptions": {
                        "DriverConfig": {"Options": {"type": "ext4", "device": "/dev/sda1"}}
                    },
                }
            ]
        ),
        {
            "mounts": (
                Mount(
                    "bind",
                    "/dev/sda1",
                    "/x",
                    False,
                    ("volume=disk",),
                    "HostConfig.Mounts[0]",
                    "",
                    (("type", "ext4"), ("device", "/dev/sda1")),
                ),
            )
        },
    ),
    (
        "Mounts: a fresh proc mount through a local volume reaches the host's /proc",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "p",
                    "Target": "/x",
                    "VolumeOptions": {
                        "DriverConfig": {"Options": {"type": "proc", "device": "proc"}}
                    },
                }
            ]
        ),
        {
            "mounts": (
                Mount(
                    "bind",
                    "/proc",
                    "/x",
                    False,
                    ("volume=p",),
                    "HostConfig.Mounts[0]",
                    "",
                    (("type", "proc"), ("device", "proc")),
                ),
            )
        },
    ),
    (
        "Mounts: plain volume, subpath, tmpfs, image and npipe",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "data",
                    "Target": "/d",
                    "VolumeOptions": {"Subpath": "a"},
                },
                {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448}},
                {"Type": "image", "Source": "busybox", "Target": "/i"},
                {"Type": "npipe", "Source": "\\\\.\\pipe\\x", "Target": "/p"},
            ]
        ),
        {
            "mounts": (
                Mount("volume", "data", "/d", False, ("subpath=a",), "HostConfig.Mounts[0]"),
                Mount("tmpfs", "", "/t", False, ("size=1024", "mode=700"), "HostConfig.Mounts[1]"),
                Mount("image", "busybox", "/i", False, (), "HostConfig.Mounts[2]"),
                Mount(
                    "other", "\\\\.\\pipe\\x", "/p", False, ("type=npipe",), "HostConfig.Mounts[3]"
                ),
            ),
        },
    ),
    (
        "Mounts: a volume with an absolute source is a host path (Podman mkdirs it)",
        _host_config(Mounts=[{"Type": "volume", "Source": "/etc", "Target": "/x"}]),
        {"mounts": (Mount("bind", "/etc", "/x", False, (), "HostConfig.Mounts[0]"),)},
    ),
    (
        "Config.Volumes keys: anonymous for Docker, a -v string for Podman's compat API",
        {"Image": "a", "Volumes": {"/data": {}, "/:/host": {}}},
        {
            "mounts": (
                Mount("volume", "", "/data", False, (), 'Volumes["/data"]'),
                Mount("bind", "/", "/host", False, (), 'Volumes["/:/host"]'),
            ),
        },
    ),
    (
        "Tmpfs, VolumesFrom",
        _host_config(Tmpfs={"/run": "rw,noexec"}, VolumesFrom=["other:ro"]),
        {
            "mounts": (
                Mount("tmpfs", "", "/run", False, ("rw", "noexec"), 'HostConfig.Tmpfs["/run"]'),
            ),
            "volumes_from": ("other:ro",),
        },
    ),
    (
        "device requests (--gpus all) and device cgroup rules",
        _host_config(
            DeviceRequests=[
                {
                    "Driver": "",
                    "Count": -1,
                    "DeviceIDs": None,
                    "Capabilities": [["gpu"]],
                    "Options": {},
                }
            ],
            DeviceCgroupRules=["c 1:3 mr", "a *:* rwm"],
            Devices=[{"PathOnHost": "/dev/fuse", "PathInContainer": "", "CgroupPermissions": ""}],
        ),
        {
            "device_requests": ("driver=default count=-1 capabilities=gpu",),
            "device_cgroup_rules": ("c 1:3 mr", "a *:* rwm"),
            "devices": (Device("/dev/fuse", "/dev/fuse", "rwm", "HostConfig.Devices[0]"),),
        },
    ),
    (
        "capability spellings: one string, CAP_ prefix, lower case, ALL, legacy Capabilities",
        _host_config(
            CapAdd=["cap_net_admin", " sys_ptrace", "all"],
            CapDrop="MKNOD",
            Capabilities=["CAP_SYS_MODULE"],
        ),
        {"cap_add": ("NET_ADMIN", "SYS_PTRACE", "ALL", "SYS_MODULE"), "cap_drop": ("MKNOD",)},
    ),
    (
        "security options: colon forms, bare words, Podman's unmask and systempaths",
        _host_config(
            SecurityOpt=[
                "seccomp:unconfined",
                "label:disable",
                "disable",
                "label=type:spc_t",
                "apparmor=unconfined",
                "no-new-privileges",
                "unmask=/proc/kcore:/sys/firmware",
                "systempaths=unconfined",
                "seccomp=/etc/profile.json",
                'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
            ]
        ),
        {
            "security_opt": (
                "seccomp=unconfined",
                "label=disable",
                "label=disable",
                "label=type:spc_t",
                "apparmor=unconfined",
                "no-new-privileges=true",
                "unmask=/proc/kcore:/sys/firmware",
                "systempaths=unconfined",
                "seccomp=/etc/profile.json",
                'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
            ),
            "unmasked_paths": ("/proc/kcore", "/sys/firmware", "ALL"),
            "masked_paths_override": True,
            "host_files": (
                HostFile("/etc/profile.json", "seccomp-profile", "HostConfig.SecurityOpt[8]"),
            ),
        },
    ),
    (
        "namespace modes: host, container, Podman's ns: paths, user-mode networks",
        _host_config(
            PidMode="ns:/proc/1/ns/pid",
            IpcMode="container:db",
            NetworkMode="slirp4netns:allow_host_loopback=true",
            UTSMode="host",
            UsernsMode="host",
            CgroupnsMode="host",
        ),
        {
            "namespaces": (
                Namespace("pid", NamespaceMode.PATH, "/proc/1/ns/pid", "HostConfig.PidMode"),
                Namespace("ipc", NamespaceMode.CONTAINER, "db", "HostConfig.IpcMode"),
                Namespace(
                    "net",
                    NamespaceMode.OTHER,
                    "slirp4netns:allow_host_loopback=true",
                    "HostConfig.NetworkMode",
                ),
                Namespace("uts", HOST, "host", "HostConfig.UTSMode"),
                Namespace("user", HOST, "host", "HostConfig.UsernsMode"),
                Namespace("cgroup", HOST, "host", "HostConfig.CgroupnsMode"),
            ),
        },
    ),
    (
        "only exact 'host' is the host namespace",
        _host_config(NetworkMode="HOST", IpcMode="Host", PidMode="shareable"),
        {
            "namespaces": (
                Namespace("pid", NamespaceMode.PRIVATE, "shareable", "HostConfig.PidMode"),
                Namespace("ipc", NamespaceMode.OTHER, "Host", "HostConfig.IpcMode"),
                Namespace("net", NamespaceMode.PRIVATE, "HOST", "HostConfig.NetworkMode"),
            ),
        },
    ),
    (
        "joining the host network through NetworkingConfig.EndpointsConfig",
        {"Image": "a", "NetworkingConfig": {"EndpointsConfig": {"host": {}}}},
        {
            "namespaces": (
                Namespace("net", HOST, "host", 'NetworkingConfig.EndpointsConfig["host"]'),
            ),
        },
    ),
    (
        "sysctls, runtime, cgroup parent, masked paths, annotations",
        _host_config(
            Sysctls={"kernel.shm_rmid_forced": "1"},
            Runtime="runsc",
            CgroupParent="/",
            MaskedPaths=[],
            ReadonlyPaths=[],
            Annotations={"run.oci.keep_original_groups": "1"},
        ),
        {
            "sysctls": (("kernel.shm_rmid_forced", "1"),),
            "runtime": "runsc",
            "cgroup_parent": "/",
            "masked_paths_override": True,
            "annotations": (("run.oci.keep_original_groups", "1"),),
        },
    ),
    (
        "host files: ContainerIDFile, a log path, a log socket",
        _host_config(
            ContainerIDFile="/etc/cid",
            LogConfig={
                "Type": "fluentd",
                "Config": {"path": "/etc/shadow", "fluentd-address": "unix:///run/x.sock"},
            },
        ),
        {
            "host_files": (
                HostFile("/etc/cid", "container-id-file", "HostConfig.ContainerIDFile"),
                HostFile("/etc/shadow", "log-path", 'HostConfig.LogConfig.Config["path"]'),
                HostFile(
                    "unix:///run/x.sock",
                    "log-opt fluentd-address",
                    'HostConfig.LogConfig.Config["fluentd-address"]',
                ),
            ),
        },
    ),
    ("the user comes from Config.User", {"Image": "a", "User": "0:0"}, {"user": "0:0"}),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in CREATE_ROWS], ids=[r[0] for r in CREATE_ROWS]
)
def test_container_create(body: Any, expected: dict[str, Any]) -> None:
    assert _fields(_create(body), expected) == expected


AMBIGUOUS_CREATE = [
    ("a field given twice", b'{"HostConfig": {"Privileged": false, "Privileged": true}}'),
    ("a field in two spellings", b'{"HostConfig": {"privileged": true, "Privileged": false}}'),
    ("a long-s spelling only Go folds", '{"HostConfig": {"Binds": ["/:/h"], "Bind\u017f": []}}'),
    (
        "a comma Podman would read as more --mount options",
        _host_config(Mounts=[{"Type": "volume", "Source": "x,type=bind,source=/", "Target": "/m"}]),
    ),
    (
        "a device Podman re-splits at ':'",
        _host_config(Devices=[{"PathOnHost": "/dev/null:/dev/sda", "PathInContainer": "/x"}]),
    ),
    ("a sysctl key Podman re-splits at '='", _host_config(Sysctls={"a=b": "c"})),
    ("a tmpfs path Podman re-splits at ':'", _host_config(Tmpfs={"/x:/etc": ""})),
    (
        "a log option in two spellings",
        _host_config(LogConfig={"Config": {"path": "/a", "PATH": "/b"}}),
    ),
    (
        "volume driver options in two spellings",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/m",
                    "VolumeOptions": {
                        "DriverConfig": {"Options": {"device": "/tmp", "Device": "/"}}
                    },
                }
            ]
        ),
    ),
    (
        "an overlay with relative layers",
        _host_config(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/m",
                    "VolumeOptions": {
                        "DriverConfig": {
                            "Options": {"type": "overlay", "device": "overlay", "o": "lowerdir=etc"}
                        }
                    },
                }
            ]
        ),
    ),
]


@pytest.mark.parametrize(
    "body", [b for _, b in AMBIGUOUS_CREATE], ids=[r[0] for r in AMBIGUOUS_CREATE]
)
def test_container_create_ambiguous(body: Any) -> None:
    raw = body.encode() if isinstance(body, str) else _bytes(body)
    with pytest.raises(AmbiguousBody):
        _create(raw)


INVALID_CREATE = [
    ("not JSON", b"{"),
    ("an empty body", b""),
    ("a string where Go wants a bool", _host_config(Privileged="true")),
    ("a bind with four parts", _host_config(Binds=["/a:/b:ro:x"])),
    ("a body that is not an object", [1]),
]


@pytest.mark.parametrize("body", [b for _, b in INVALID_CREATE], ids=[r[0] for r in INVALID_CREATE])
def test_container_create_invalid(body: Any) -> None:
    with pytest.raises(InvalidBody):
        _create(_bytes(body))


def test_container_create_notes_name_the_fields_present() -> None:
    request = normalize("container.create", "container", "container-create", "", _bytes(CLI_RUN))
    assert {"HostConfig.Privileged", "HostConfig.Binds", "HostConfig.PidMode"} <= set(request.notes)
    assert "HostConfig.Cgroup" not in request.notes  # empty fields are not noted


# -- container start / update, exec -----------------------------------------------------


def _request(kind: str, body: Any, query: str = "", operation: str = "x.y") -> Request:
    payload = None if body is None else _bytes(body)
    return normalize(operation, operation.split(".")[0], kind, query, payload)


def test_start_body_is_a_whole_host_config() -> None:
    """API < 1.24: POST /containers/{id}/start with a HostConfig body."""
    request = _request("container-start", {"Binds": ["/:/h"], "Privileged": True})
    (spec,) = request.containers
    assert spec.privileged
    assert spec.mounts == (Mount("bind", "/", "/h", False, (), "Binds[0]"),)


def test_start_body_may_nest_its_host_config() -> None:
    (spec,) = _request("container-start", {"HostConfig": {"PidMode": "host"}}).containers
    assert spec.namespaces == (Namespace("pid", HOST, "host", "HostConfig.PidMode"),)


@pytest.mark.parametrize("body", [None, b"", b"  "])
def test_start_without_body_has_no_spec(body: bytes | None) -> None:
    assert _request("container-start", body).containers == ()


def test_start_checkpoint_dir_is_a_host_directory() -> None:
    query = "checkpoint=c1&checkpoint-dir=/var/lib/secret"
    (spec,) = _request("container-start", None, query).containers
    assert spec.host_files == (HostFile("/var/lib/secret", "checkpoint-dir", "checkpoint-dir"),)


UPDATE_ROWS: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "Docker UpdateConfig: Resources at the top level",
        {"CgroupParent": "/", "Devices": [{"PathOnHost": "/dev/mem"}], "RestartPolicy": {}},
        {
            "cgroup_parent": "/",
            "devices": (Device("/dev/mem", "/dev/mem", "rwm", "Devices[0]"),),
        },
    ),
    (
        "libpod LinuxResources: devices are OCI cgroup rules",
        {"devices": [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c"}]},
        {"device_cgroup_rules": ("a *:* rwm",)},
    ),
    (
        "libpod rule with numbers",
        {"devices": [{"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"}]},
        {"device_cgroup_rules": ("b 8:0 rw",)},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in UPDATE_ROWS], ids=[r[0] for r in UPDATE_ROWS]
)
def test_container_update(body: Any, expected: dict[str, Any]) -> None:
    (spec,) = _request("container-update", body).containers
    assert _fields(spec, expected) == expected


@pytest.mark.parametrize(
    ("kind", "body", "privileged", "user"),
    [
        ("exec-create", {"Cmd": ["sh"], "Privileged": True, "User": "root"}, True, "root"),
        ("exec-create", {"Cmd": ["sh"], "AttachStdout": True}, False, ""),
        ("libpod-exec-create", {"privileged": True, "user": "0"}, True, "0"),
    ],
)
def test_exec_create(kind: str, body: Any, privileged: bool, user: str) -> None:
    spec = _request(kind, body).exec
    assert spec is not None
    assert (spec.privileged, spec.user) == (privileged, user)


# -- volumes, networks -----------------------------------------------------------------

VOLUME_ROWS: list[tuple[str, dict[str, Any], str]] = [
    (
        "docker volume create -o type=none -o o=bind -o device=/etc",
        {"Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}},
        "/etc",
    ),
    (
        "o=rbind with any type",
        {"DriverOpts": {"type": "tmpfs", "o": "size=1m,rbind", "device": "/root"}},
        "/root",
    ),
    (
        "a relative device is kept raw",
        {"DriverOpts": {"type": "none", "o": "bind", "device": "../x"}},
        "../x",
    ),
    ("a block device", {"DriverOpts": {"type": "xfs", "device": "/dev/sda1"}}, "/dev/sda1"),
    (
        "a device with no type (mount(8) detects it)",
        {"DriverOpts": {"device": "LABEL=root"}},
        "LABEL=root",
    ),
    ("sysfs", {"DriverOpts": {"type": "sysfs", "device": "sysfs"}}, "/sys"),
    (
        "overlay: the directory holding all its layers",
        {
            "DriverOpts": {
                "type": "overlay",
                "device": "overlay",
                "o": "lowerdir=/etc:/usr,upperdir=/var/up,workdir=/var/work",
            }
        },
        "/",
    ),
    ("tmpfs", {"DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}}, ""),
    (
        "nfs is not a host path",
        {"DriverOpts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}},
        "",
    ),
    (
        "a plugin driver is judged at plugin install",
        {"Driver": "rexray", "DriverOpts": {"device": "/"}},
        "",
    ),
    ("no options", {"Name": "data"}, ""),
]


@pytest.mark.parametrize(
    ("body", "bind_source"), [(b, s) for _, b, s in VOLUME_ROWS], ids=[r[0] for r in VOLUME_ROWS]
)
def test_volume_create(body: dict[str, Any], bind_source: str) -> None:
    volume = _request("volume-create", body).volume
    assert volume is not None
    assert volume.bind_source == bind_source
    assert volume.options == tuple(body.get("DriverOpts", {}).items())


def test_network_create_is_noted_only() -> None:
    body = {"Name": "lan", "Driver": "macvlan", "Options": {"parent": "eth0"}}
    request = _request("network-create", body)
    assert request.containers == ()
    assert "network driver macvlan" in request.notes
    assert "network option parent=eth0" in request.notes


# -- services and plugins -----------------------------------------------------------------

SERVICE = {
    "Name": "web",
    "Labels": {},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "nginx",
            "User": "0",
            "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}],
            "Privileges": {
                "SELinuxContext": {"Disable": True},
                "Seccomp": {"Mode": "unconfined"},
                "AppArmor": {"Mode": "disabled"},
                "NoNewPrivileges": False,
            },
            "Sysctls": {"net.ipv4.ip_forward": "1"},
            "CapabilityAdd": ["CAP_SYS_ADMIN"],
            "CapabilityDrop": None,
        },
        "Networks": [{"Target": "host"}],
        "LogDriver": {"Name": "syslog", "Options": {"syslog-address": "unix:///dev/log"}},
    },
    "Mode": {"Replicated": {"Replicas": 1}},
}


def test_service_task_template() -> None:
    request = _request("service", SERVICE, operation="service.create")
    (spec,) = request.containers
    cs = "TaskTemplate.ContainerSpec"
    assert _fields(
        spec,
        {
            "user": "",
            "mounts": (),
            "security_opt": (),
            "sysctls": (),
            "cap_add": (),
            "namespaces": (),
            "host_files": (),
        },
    ) == {
        "user": "0",
        "mounts": (Mount("bind", "/var/run/docker.sock", "/s", False, (), f"{cs}.Mounts[0]"),),
        "security_opt": ("label=disable", "seccomp=unconfined", "apparmor=unconfined"),
        "sysctls": (("net.ipv4.ip_forward", "1"),),
        "cap_add": ("SYS_ADMIN",),
        "namespaces": (Namespace("net", HOST, "host", "TaskTemplate.Networks[0].Target"),),
        "host_files": (
            HostFile(
                "unix:///dev/log",
                "log-opt syslog-address",
                'TaskTemplate.LogDriver.Options["syslog-address"]',
            ),
        ),
    }
    assert request.plugin is None


def test_service_plugin_runtime() -> None:
    body = {
        "Name": "p",
        "TaskTemplate": {
            "Runtime": "plugin",
            "PluginSpec": {
                "name": "vieux/sshfs",
                "privileges": [{"name": "mount", "value": ["/var/lib/docker/plugins/"]}],
            },
        },
    }
    request = _request("service", body)
    assert request.plugin is not None
    assert request.plugin.privileges == ("mount: /var/lib/docker/plugins/",)


@pytest.mark.parametrize(
    ("body", "privileges"),
    [
        (
            [
                {"Name": "network", "Description": "", "Value": ["host"]},
                {"Name": "mount", "Value": ["/var/lib/docker/plugins/", "/"]},
                {"Name": "allow-all-devices", "Value": None},
                {"Name": "capabilities", "Value": ["CAP_SYS_ADMIN"]},
            ],
            (
                "network: host",
                "mount: /var/lib/docker/plugins/,/",
                "allow-all-devices",
                "capabilities: CAP_SYS_ADMIN",
            ),
        ),
        (["DEBUG=1", "mymount.source=/etc"], ("set: DEBUG=1", "set: mymount.source=/etc")),
        ([], ()),
        (b"null", ()),
    ],
)
def test_plugin_privileges(body: Any, privileges: tuple[str, ...]) -> None:
    plugin = _request("plugin", body, operation="plugin.pull").plugin
    assert plugin is not None
    assert plugin.privileges == privileges


# -- build (query only) ---------------------------------------------------------------------

BUILD_ROWS: list[tuple[str, str, str, tuple[tuple[str, str], ...]]] = [
    ("docker build --network host", "t=x&networkmode=host&nsoptions=%5B%5D", "host", ()),
    (
        "no nsoptions: Podman runs RUN steps in the host network",
        "t=x&networkmode=default",
        PODMAN_DEFAULT_NETWORK,
        (),
    ),
    (
        "nsoptions asking for a private network",
        "networkmode=bridge&nsoptions=%5B%7B%22Name%22%3A%22network%22%7D%5D",
        "bridge",
        (),
    ),
    ("Docker isolation is recorded, not an option", "nsoptions=%5B%5D&isolation=hyperv", "", ()),
    (
        "extra hosts and memory do not reach the host",
        "nsoptions=%5B%5D&extrahosts=%5B%22a%3A1.2.3.4%22%5D&memory=1",
        "",
        (),
    ),
    ("a cgroup parent does", "nsoptions=%5B%5D&cgroupparent=%2F", "", (("cgroupparent", "/"),)),
    (
        "a remote URL is fetched, not a host path",
        "nsoptions=%5B%5D&remote=https%3A%2F%2Fx%2Fy.tar",
        "",
        (),
    ),
]


@pytest.mark.parametrize(
    ("query", "network_mode", "options"),
    [(q, n, o) for _, q, n, o in BUILD_ROWS],
    ids=[r[0] for r in BUILD_ROWS],
)
def test_build_query(query: str, network_mode: str, options: tuple[tuple[str, str], ...]) -> None:
    build = normalize("build.image", "build", "", query, None).build
    assert build is not None
    assert (build.network_mode, build.options) == (network_mode, options)


def test_build_isolation() -> None:
    build = normalize("build.image", "build", "", "isolation=process&nsoptions=[]", None).build
    assert build is not None
    assert build.isolation == "process"


def test_buildkit_session_has_no_podman_default() -> None:
    build = normalize("build.session", "build", "", "", None).build
    assert build is not None
    assert build.network_mode == ""


@pytest.mark.parametrize(
    "query",
    [
        "networkmode=default&networkmode=host",  # Docker reads the first, Podman the last
        "NetworkMode=host",  # gorilla/schema matches names case-insensitively
        "nsoptions=[]&NSOptions=[]",
    ],
)
def test_build_query_ambiguous(query: str) -> None:
    with pytest.raises(AmbiguousBody):
        normalize("build.image", "build", "", query, None)


def test_other_requests_are_not_read() -> None:
    """No body kind and not a build: nothing to normalise, whatever the query."""
    request = normalize("container.list", "container", "", "all=1&all=0", None)
    assert request == Request("container.list", "container")


# -- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "source", "target", "read_only", "options"),
    [
        ("/a:/b", "bind", "/a", "/b", False, ()),
        ("/a:/b:ro,Z", "bind", "/a", "/b", True, ("ro", "Z")),
        ("/a:/b:ro,rw", "bind", "/a", "/b", False, ("ro", "rw")),
        ("vol:/b", "volume", "vol", "/b", False, ()),
        ("/only", "volume", "", "/only", False, ()),
        ("./x:/b", "bind", "./x", "/b", False, ()),
        (".hidden:/b", "bind", ".hidden", "/b", False, ()),
        (
            "/lower:/b:O,upperdir=/u,workdir=/w",
            "bind",
            "/lower",
            "/b",
            False,
            ("O", "upperdir=/u", "workdir=/w"),
        ),
    ],
)
def test_parse_bind(
    raw: str, kind: str, source: str, target: str, read_only: bool, options: tuple[str, ...]
) -> None:
    mount = parse_bind(raw, "o")
    assert (mount.kind, mount.source, mount.target, mount.read_only, mount.options) == (
        kind,
        source,
        target,
        read_only,
        options,
    )


@pytest.mark.parametrize(
    ("raw", "device"),
    [
        ("/dev/sda", ("/dev/sda", "/dev/sda", "rwm")),
        ("/dev/sda:/dev/xvda", ("/dev/sda", "/dev/xvda", "rwm")),
        ("/dev/sda:r", ("/dev/sda", "/dev/sda", "r")),
        ("/dev/sda:/dev/xvda:rw", ("/dev/sda", "/dev/xvda", "rw")),
    ],
)
def test_parse_device(raw: str, device: tuple[str, str, str]) -> None:
    parsed = parse_device(raw, "o")
    assert (parsed.host_path, parsed.container_path, parsed.permissions) == device


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("SYS_ADMIN", "SYS_ADMIN"),
        ("cap_sys_admin", "SYS_ADMIN"),
        ("Cap_Net_Raw", "NET_RAW"),
        (" all ", "ALL"),
        ("CAP_ALL", "ALL"),
    ],
)
def test_capability_spelling(name: str, normalized: str) -> None:
    assert normalize_cap(name) == normalized


@pytest.mark.parametrize(
    ("option", "pair"),
    [
        ("seccomp=unconfined", ("seccomp", "unconfined")),
        ("seccomp:unconfined", ("seccomp", "unconfined")),
        ("label=type:spc_t", ("label", "type:spc_t")),
        ("label:type:spc_t", ("label", "type:spc_t")),
        ("no-new-privileges", ("no-new-privileges", "true")),
        ("disable", ("label", "disable")),
        ("bogus", ("bogus", "")),
    ],
)
def test_security_option_split(option: str, pair: tuple[str, str]) -> None:
    assert split_security_opt(option) == pair


@pytest.mark.parametrize("operation", ["build.prune", "build.cancel"])
def test_build_cache_operations_are_not_builds(operation: str) -> None:
    assert normalize(operation, "build", "", "all=1", None).build is None
