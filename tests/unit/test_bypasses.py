"""Red-team table: hostile spellings and roads, and the ordinary requests beside them.

Each row is (name, method, target, body) -> expected, decided by
``policies/default.yaml`` through the same classify -> normalise -> evaluate
pipeline ``serve`` runs. Expected is ``ALLOW``, ``400`` (a body or target the
engines could read differently, or not at all), or the id of the rule that
must refuse it (``403``). Rows marked ``xfail`` are holes in stages this file
does not own; their ``reason`` says what the engine does and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sockproxy.errors import ProxyError
from sockproxy.normalize import normalize
from sockproxy.policy import Policy, evaluate, load_policy
from sockproxy.routes import classify

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DEFAULT = load_policy(str(POLICIES / "default.yaml"))

ALLOW = "allow"
CREATE = "/v1.41/containers/create"
LIBPOD = "/v4.3.0/libpod/containers/create"
BUILD = "/v1.41/build?nsoptions=%5B%5D"  # a Podman build that asks for its own network
LIBPOD_BUILD = "/v4.3.0/libpod/build?nsoptions=%5B%5D"


def decide(method: str, target: str, body: Any, policy: Policy = DEFAULT) -> str:
    """ALLOW, "400", or the id of the refusing rule."""
    route = classify(method, target)
    if isinstance(body, dict | list):
        payload: bytes | None = json.dumps(body).encode()
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    try:
        request = normalize(route.operation, route.section, route.body, route.query, payload)
    except ProxyError as exc:
        return str(exc.status)
    decision = evaluate(policy, request)
    return ALLOW if decision.allowed else str(decision.rule)


def hc(**fields: Any) -> dict[str, Any]:
    """A Docker create body with these HostConfig fields."""
    return {"Image": "busybox", "HostConfig": fields}


def xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


ROWS: list[Any] = [
    # -- ordinary clients: these must keep working --------------------------------
    # docker run -v named:/data -v /tmp/x:/x --cap-add NET_BIND_SERVICE (CLI 28)
    (
        "docker run, volumes and an allowed cap",
        "POST",
        CREATE,
        {
            "Image": "busybox",
            "Cmd": ["sh"],
            "Volumes": {},
            "Labels": {},
            "HostConfig": {
                "Binds": ["named:/data", "/tmp/x:/x"],
                "CapAdd": ["NET_BIND_SERVICE"],
                "NetworkMode": "default",
                "RestartPolicy": {"Name": "no"},
                "LogConfig": {"Type": "", "Config": {}},
                "Mounts": None,
                "MaskedPaths": None,
                "ReadonlyPaths": None,
                "CgroupnsMode": "private",
            },
            "NetworkingConfig": {"EndpointsConfig": {"default": {}}},
        },
        ALLOW,
    ),
    (
        "compose: named network and volume mount",
        "POST",
        CREATE,
        {
            "Image": "nginx",
            "HostConfig": {
                "NetworkMode": "proj_default",
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "proj_data",
                        "Target": "/data",
                        "VolumeOptions": {},
                    },
                    {
                        "Type": "bind",
                        "Source": "/srv/app",
                        "Target": "/app",
                        "BindOptions": {"Propagation": "rprivate"},
                    },
                    {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1048576}},
                ],
            },
            "NetworkingConfig": {"EndpointsConfig": {"proj_default": {"Aliases": ["web"]}}},
        },
        ALLOW,
    ),
    (
        "compose network_mode service:x (a join: refused by default.yaml's allow-join: false)",
        "POST",
        CREATE,
        hc(NetworkMode="container:abc"),
        "no-host-namespaces",
    ),
    ("bind with relabel and ro", "POST", CREATE, hc(Binds=["/tmp/x:/x:z,ro"]), ALLOW),
    ("apparmor docker-default", "POST", CREATE, hc(SecurityOpt=["apparmor=docker-default"]), ALLOW),
    ("no-new-privileges", "POST", CREATE, hc(SecurityOpt=["no-new-privileges:true"]), ALLOW),
    (
        "namespaced sysctl",
        "POST",
        CREATE,
        hc(Sysctls={"net.ipv4.ip_unprivileged_port_start": "0"}),
        ALLOW,
    ),
    (
        "podman --remote run",
        "POST",
        LIBPOD,
        {
            "image": "busybox",
            "command": ["sh"],
            "netns": {"nsmode": "bridge"},
            "mounts": [
                {"type": "bind", "source": "/tmp/x", "destination": "/x", "options": ["rbind"]}
            ],
            "volumes": [{"Name": "data", "Dest": "/data", "Options": []}],
            "cap_add": ["NET_BIND_SERVICE"],
            "userns": {"nsmode": "private"},
        },
        ALLOW,
    ),
    ("exec", "POST", "/v1.41/containers/abc/exec", {"Cmd": ["sh"], "AttachStdout": True}, ALLOW),
    ("start without a body", "POST", "/v1.41/containers/abc/start", None, ALLOW),
    (
        "volume create, local",
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v", "DriverOpts": {}},
        ALLOW,
    ),
    (
        "podman build, own network",
        "POST",
        LIBPOD_BUILD + "&t=app%3A1&t=localhost%3A5000%2Fapp",
        None,
        ALLOW,
    ),
    ("podman build, oci isolation", "POST", LIBPOD_BUILD + "&isolation=oci", None, ALLOW),
    (
        "libpod image mount from a registry",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "image", "Source": "busybox", "Target": "/i"}]),
        ALLOW,
    ),
    # -- JSON spelling ------------------------------------------------------------
    ("Privileged lower case", "POST", CREATE, hc(privileged=True), "no-privileged"),
    (
        "Privileged at the top level (API < 1.24)",
        "POST",
        "/v1.18/containers/create",
        {"Image": "x", "Privileged": True},
        "no-privileged",
    ),
    (
        "top level with HostConfig null",
        "POST",
        CREATE,
        {"Image": "x", "Privileged": True, "HostConfig": None},
        "no-privileged",
    ),
    # Docker 20.10's wrapper keeps the nested HostConfig and drops the top-level Privileged.
    (
        "top level ignored beside a HostConfig",
        "POST",
        CREATE,
        {"Image": "x", "Privileged": True, "HostConfig": {}},
        ALLOW,
    ),
    (
        "Privileged twice",
        "POST",
        CREATE,
        '{"Image":"x","HostConfig":{"Privileged":false,"privileged":true}}',
        "400",
    ),
    (
        "HostConfig twice",
        "POST",
        CREATE,
        '{"HostConfig":{},"hostconfig":{"Privileged":true}}',
        "400",
    ),
    (
        "Kelvin sign in a key",
        "POST",
        LIBPOD,
        '{"image":"x","\\u212aernel":1,"privileged":false}',
        ALLOW,
    ),
    (
        "long s spelling of SecurityOpt",
        "POST",
        CREATE,
        '{"HostConfig":{"\\u017fecurityOpt":["seccomp=unconfined"]}}',
        "400",
    ),
    ("Privileged as a string", "POST", CREATE, hc(Privileged="true"), "400"),
    ("Privileged as a number", "POST", CREATE, hc(Privileged=1), "400"),
    ("trailing data", "POST", CREATE, '{"Image":"x"} {"HostConfig":{"Privileged":true}}', "400"),
    ("BOM", "POST", CREATE, b'\xef\xbb\xbf{"HostConfig":{"Privileged":true}}', "400"),
    ("invalid UTF-8 in a key", "POST", CREATE, b'{"HostConfig":{"Privileged\xff":true}}', "400"),
    # -- routes -------------------------------------------------------------------
    ("double slash", "POST", "/v1.41//containers/create", hc(Privileged=True), "no-privileged"),
    (
        "dot segments",
        "POST",
        "/v1.41/x/../containers/./create",
        hc(Privileged=True),
        "no-privileged",
    ),
    (
        "percent-encoded letter",
        "POST",
        "/v1.41/containers/cre%61te",
        hc(Privileged=True),
        "no-privileged",
    ),
    (
        "encoded slash",
        "POST",
        "/v1.41/containers%2Fcreate",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "encoded dot",
        "POST",
        "/v1.41/containers/%2e%2e/containers/create",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "three-part version",
        "POST",
        "/v1.41.0/containers/create",
        hc(Privileged=True),
        "no-privileged",
    ),
    ("v1 version", "POST", "/v1/containers/create", hc(Privileged=True), "no-privileged"),
    ("unversioned", "POST", "/containers/create", hc(Privileged=True), "no-privileged"),
    (
        "libpod short version",
        "POST",
        "/v4/libpod/containers/create",
        {"privileged": True},
        "no-privileged",
    ),
    ("lower-case method", "post", CREATE, hc(Privileged=True), "endpoint-not-recognised"),
    (
        "semicolon after the path",
        "POST",
        "/v1.41/containers/create;x",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "fragment in the path",
        "POST",
        "/v1.41/containers/create#x",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "upper-case version",
        "POST",
        "/V1.41/containers/create",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "podman-only version",
        "POST",
        "/v1.41-rc/containers/create",
        hc(Privileged=True),
        "endpoint-not-recognised",
    ),
    (
        "exec via a container id with slashes",
        "POST",
        "/v1.41/containers/a/b/exec",
        {"Privileged": True},
        "no-privileged",
    ),
    (
        "libpod pod create sharing the host pid namespace",
        "POST",
        "/v4.3.0/libpod/pods/create",
        {"pidns": {"nsmode": "host"}},
        "no-host-namespaces",
    ),
    (
        "play kube of an empty pod (podman --remote sends logdriver=, its spelling)",
        "POST",
        "/v4.3.0/libpod/play/kube?logdriver=k8s-file",
        "kind: Pod",
        ALLOW,
    ),
    (
        "container mount is denied",
        "POST",
        "/v4.3.0/libpod/containers/abc/mount",
        None,
        "operation-not-allowed",
    ),
    ("BuildKit session is denied", "POST", "/v1.41/session", None, "operation-not-allowed"),
    (
        "plugin pull is not in default",
        "POST",
        "/v1.41/plugins/pull?remote=x",
        [],
        "operation-not-allowed",
    ),
    # -- binds --------------------------------------------------------------------
    ("bind of /", "POST", CREATE, hc(Binds=["/:/h"]), "bind-mount-paths"),
    ("bind climbing out of /tmp", "POST", CREATE, hc(Binds=["/tmp/../:/h"]), "bind-mount-paths"),
    (
        "bind of the docker socket",
        "POST",
        CREATE,
        hc(Binds=["/var/run/docker.sock:/s"]),
        "bind-mount-paths",
    ),
    ("bind of /run", "POST", CREATE, hc(Binds=["/run:/r"]), "bind-mount-paths"),
    ("bind of /proc/1/root", "POST", CREATE, hc(Binds=["/proc/1/root:/r"]), "bind-mount-paths"),
    ("bind of /sys/fs/cgroup", "POST", CREATE, hc(Binds=["/sys/fs/cgroup:/c"]), "bind-mount-paths"),
    ("bind of ~/.ssh", "POST", CREATE, hc(Binds=["/home/u/.ssh:/s"]), "bind-mount-paths"),
    (
        "bind of an X11 socket dir",
        "POST",
        CREATE,
        hc(Binds=["/tmp/./.X11-unix:/x"]),
        "bind-mount-paths",
    ),
    ("relative bind (Podman: ./x)", "POST", CREATE, hc(Binds=["./x:/x"]), "bind-mount-paths"),
    ("too many colons", "POST", CREATE, hc(Binds=["/:/h:ro:z"]), "400"),
    (
        "Volumes key read as a bind by Podman",
        "POST",
        CREATE,
        {"Image": "x", "Volumes": {"/:/h": {}}},
        "bind-mount-paths",
    ),
    ("shared propagation", "POST", CREATE, hc(Binds=["/tmp/x:/x:rshared"]), "safe-mount-options"),
    (
        "overlay upperdir on the host",
        "POST",
        CREATE,
        hc(Binds=["/tmp/x:/x:O,upperdir=/etc,workdir=/tmp/w"]),
        "safe-mount-options",
    ),
    (
        "Mounts bind of /",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "bind", "Source": "/", "Target": "/h"}]),
        "bind-mount-paths",
    ),
    (
        "Mounts bind, propagation",
        "POST",
        CREATE,
        hc(
            Mounts=[
                {
                    "Type": "bind",
                    "Source": "/tmp/x",
                    "Target": "/h",
                    "BindOptions": {"Propagation": "rshared"},
                }
            ]
        ),
        "safe-mount-options",
    ),
    (
        "Mounts bind with a comma (Podman re-splits)",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "bind", "Source": "/tmp/x,src=/", "Target": "/h"}]),
        "400",
    ),
    (
        "Mounts volume with an absolute source",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "volume", "Source": "/etc", "Target": "/h"}]),
        "bind-mount-paths",
    ),
    (
        "Mounts volume, local driver O=bind",
        "POST",
        CREATE,
        hc(
            Mounts=[
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/h",
                    "VolumeOptions": {
                        "DriverConfig": {"Options": {"O": "bind", "device": "/", "type": "none"}}
                    },
                }
            ]
        ),
        "bind-mount-paths",
    ),
    # Podman's compat handler MkdirAll's every absolute Mounts[].Source, whatever
    # the type (fixed here).
    (
        "tmpfs with a host Source (Podman mkdirs it)",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "tmpfs", "Source": "/etc/x", "Target": "/h"}]),
        "bind-mount-paths",
    ),
    (
        "unknown type with a host Source",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "npipe", "Source": "/run/nologin", "Target": "/h"}]),
        "bind-mount-paths",
    ),
    (
        "image mount with a host path",
        "POST",
        CREATE,
        hc(Mounts=[{"Type": "image", "Source": "/etc", "Target": "/h"}]),
        "bind-mount-paths",
    ),
    ("tmpfs path with a colon", "POST", CREATE, hc(Tmpfs={"/x:rw,bind": ""}), "400"),
    (
        "volume create, O=bind",
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v", "DriverOpts": {"O": "bind", "device": "/", "Type": "none"}},
        "bind-mount-paths",
    ),
    (
        "volume create, type none",
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v", "DriverOpts": {"type": "none", "device": "/etc"}},
        "bind-mount-paths",
    ),
    (
        "volume create, block device",
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v", "DriverOpts": {"type": "ext4", "device": "/dev/sda1"}},
        "bind-mount-paths",
    ),
    (
        "volume create, overlay lowerdir",
        "POST",
        "/v1.41/volumes/create",
        {
            "Name": "v",
            "DriverOpts": {
                "type": "overlay",
                "device": "overlay",
                "o": "lowerdir=/etc,upperdir=/tmp/u,workdir=/tmp/w",
            },
        },
        "bind-mount-paths",
    ),
    (
        "volume create, options twice",
        "POST",
        "/v1.41/volumes/create",
        {"Name": "v", "DriverOpts": {"o": "size=1", "O": "bind"}},
        "400",
    ),
    (
        "libpod volume, mount(8) LABEL=",
        "POST",
        "/v4.3.0/libpod/volumes/create",
        {"Name": "v", "Options": {"device": "LABEL=root"}},
        "bind-mount-paths",
    ),
    (
        "libpod mounts bind of /",
        "POST",
        LIBPOD,
        {"image": "x", "mounts": [{"type": "bind", "source": "/", "destination": "/h"}]},
        "bind-mount-paths",
    ),
    (
        "libpod mounts type none, rbind",
        "POST",
        LIBPOD,
        {
            "image": "x",
            "mounts": [{"type": "none", "source": "/", "destination": "/h", "options": ["rbind"]}],
        },
        "bind-mount-paths",
    ),
    (
        "libpod mounts tmpfs with bind option",
        "POST",
        LIBPOD,
        {
            "image": "x",
            "mounts": [
                {"type": "tmpfs", "source": "/etc", "destination": "/h", "options": ["bind"]}
            ],
        },
        "bind-mount-paths",
    ),
    (
        "libpod mounts sysfs",
        "POST",
        LIBPOD,
        {"image": "x", "mounts": [{"type": "sysfs", "source": "sysfs", "destination": "/s"}]},
        "bind-mount-paths",
    ),
    (
        "libpod mounts proc",
        "POST",
        LIBPOD,
        {"image": "x", "mounts": [{"type": "proc", "source": "proc", "destination": "/p"}]},
        "bind-mount-paths",
    ),
    (
        "libpod mounts without a type",
        "POST",
        LIBPOD,
        {"image": "x", "mounts": [{"source": "/etc", "destination": "/h"}]},
        "bind-mount-paths",
    ),
    (
        "libpod volumes with a host path",
        "POST",
        LIBPOD,
        {"image": "x", "volumes": [{"Name": "/", "Dest": "/h"}]},
        "bind-mount-paths",
    ),
    (
        "libpod overlay_volumes of /",
        "POST",
        LIBPOD,
        {"image": "x", "overlay_volumes": [{"source": "/", "destination": "/h"}]},
        "bind-mount-paths",
    ),
    ("libpod rootfs /", "POST", LIBPOD, {"rootfs": "/"}, "bind-mount-paths"),
    (
        "libpod image_volumes dir:",
        "POST",
        LIBPOD,
        {"image": "x", "image_volumes": [{"Source": "dir:/", "Destination": "/h"}]},
        "registry-images-only",
    ),
    # -- devices ------------------------------------------------------------------
    (
        "Devices /dev/sda",
        "POST",
        CREATE,
        hc(
            Devices=[
                {
                    "PathOnHost": "/dev/sda",
                    "PathInContainer": "/dev/sda",
                    "CgroupPermissions": "rwm",
                }
            ]
        ),
        "no-devices",
    ),
    (
        "Devices with a colon (Podman re-splits)",
        "POST",
        CREATE,
        hc(Devices=[{"PathOnHost": "/dev/null:/dev/sda", "PathInContainer": "/x"}]),
        "400",
    ),
    (
        "DeviceCgroupRules a *:* rwm",
        "POST",
        CREATE,
        hc(DeviceCgroupRules=["a *:* rwm"]),
        "no-devices",
    ),
    (
        "DeviceRequests GPU",
        "POST",
        CREATE,
        hc(DeviceRequests=[{"Count": -1, "Capabilities": [["gpu"]]}]),
        "no-devices",
    ),
    (
        "libpod devices",
        "POST",
        LIBPOD,
        {"image": "x", "devices": [{"path": "/dev/sda:/dev/xvda:rwm"}]},
        "no-devices",
    ),
    (
        "libpod host_device_list",
        "POST",
        LIBPOD,
        {"image": "x", "host_device_list": [{"path": "/dev/sda"}]},
        "no-devices",
    ),
    (
        "libpod device_cgroup_rule",
        "POST",
        LIBPOD,
        {"image": "x", "device_cgroup_rule": [{"allow": True}]},
        "no-devices",
    ),
    (
        "update adds a device",
        "POST",
        "/v1.41/containers/abc/update",
        {
            "Devices": [
                {
                    "PathOnHost": "/dev/sda",
                    "PathInContainer": "/dev/sda",
                    "CgroupPermissions": "rwm",
                }
            ]
        },
        "no-devices",
    ),
    (
        "libpod update allows all devices",
        "POST",
        "/v4.3.0/libpod/containers/abc/update",
        {"devices": [{"allow": True, "access": "rwm"}]},
        "no-devices",
    ),
    # -- capabilities and security options -----------------------------------------
    (
        "CapAdd as one lower-case string",
        "POST",
        CREATE,
        hc(CapAdd="sys_admin"),
        "default-capabilities",
    ),
    (
        "CapAdd with CAP_ and a space",
        "POST",
        CREATE,
        hc(CapAdd=[" CAP_SYS_ADMIN"]),
        "default-capabilities",
    ),
    ("CapAdd all", "POST", CREATE, hc(CapAdd=["all"]), "default-capabilities"),
    (
        "Capabilities (API 1.40-1.42)",
        "POST",
        CREATE,
        hc(Capabilities=["CAP_SYS_ADMIN"]),
        "default-capabilities",
    ),
    (
        "libpod cap_add ALL",
        "POST",
        LIBPOD,
        {"image": "x", "cap_add": ["ALL"]},
        "default-capabilities",
    ),
    ("seccomp:unconfined", "POST", CREATE, hc(SecurityOpt=["seccomp:unconfined"]), "confined"),
    ("seccomp=Unconfined", "POST", CREATE, hc(SecurityOpt=["seccomp=Unconfined"]), "confined"),
    ("apparmor:unconfined", "POST", CREATE, hc(SecurityOpt=["apparmor:unconfined"]), "confined"),
    ("label:disable", "POST", CREATE, hc(SecurityOpt=["label:disable"]), "confined"),
    ("label=type:spc_t", "POST", CREATE, hc(SecurityOpt=["label=type:spc_t"]), "confined"),
    (
        "systempaths=unconfined",
        "POST",
        CREATE,
        hc(SecurityOpt=["systempaths=unconfined"]),
        "confined",
    ),
    (
        "seccomp profile from a host path",
        "POST",
        CREATE,
        hc(SecurityOpt=["seccomp=/etc/x.json"]),
        "confined",
    ),
    ("MaskedPaths emptied", "POST", CREATE, hc(MaskedPaths=[]), "masked-paths"),
    (
        "libpod seccomp_profile_path unconfined",
        "POST",
        LIBPOD,
        {"image": "x", "seccomp_profile_path": "unconfined"},
        "confined",
    ),
    ("libpod unmask ALL", "POST", LIBPOD, {"image": "x", "unmask": ["ALL"]}, "confined"),
    (
        "libpod selinux disable",
        "POST",
        LIBPOD,
        {"image": "x", "selinux_opts": ["disable"]},
        "confined",
    ),
    # -- namespaces ---------------------------------------------------------------
    ("PidMode host", "POST", CREATE, hc(PidMode="host"), "no-host-namespaces"),
    # Docker compares exactly ("HOST" and "host " are not the host; moby refuses
    # them as invalid), Podman refuses them: allowed through, harmless.
    ("PidMode HOST", "POST", CREATE, hc(PidMode="HOST"), ALLOW),
    ("PidMode ns: path", "POST", CREATE, hc(PidMode="ns:/proc/1/ns/pid"), "no-host-namespaces"),
    ("NetworkMode host", "POST", CREATE, hc(NetworkMode="host"), "no-host-namespaces"),
    (
        "EndpointsConfig host",
        "POST",
        CREATE,
        {"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"host": {}}}},
        "no-host-namespaces",
    ),
    ("UsernsMode host", "POST", CREATE, hc(UsernsMode="host"), "no-host-namespaces"),
    ("CgroupnsMode host", "POST", CREATE, hc(CgroupnsMode="host"), "no-host-namespaces"),
    ("IpcMode host", "POST", CREATE, hc(IpcMode="host"), "no-host-namespaces"),
    ("UTSMode host", "POST", CREATE, hc(UTSMode="host"), "no-host-namespaces"),
    (
        "libpod pidns host",
        "POST",
        LIBPOD,
        {"image": "x", "pidns": {"nsmode": "host"}},
        "no-host-namespaces",
    ),
    (
        "libpod netns by path",
        "POST",
        LIBPOD,
        {"image": "x", "netns": {"nsmode": "path", "value": "/proc/1/ns/net"}},
        "no-host-namespaces",
    ),
    (
        "libpod userns host",
        "POST",
        LIBPOD,
        {"image": "x", "userns": {"nsmode": "host"}},
        "no-host-namespaces",
    ),
    # -- sysctls, annotations, runtime, host files ----------------------------------
    (
        "kernel.core_pattern",
        "POST",
        CREATE,
        hc(Sysctls={"kernel.core_pattern": "|/x"}),
        "safe-sysctls",
    ),
    (
        "sysctl with slashes",
        "POST",
        CREATE,
        hc(Sysctls={"kernel/core_pattern": "|/x"}),
        "safe-sysctls",
    ),
    (
        "sysctl key with = (Podman re-splits)",
        "POST",
        CREATE,
        hc(Sysctls={"net.ipv4.ip_unprivileged_port_start=0,kernel.x": "1"}),
        "400",
    ),
    (
        "run.oci annotation",
        "POST",
        CREATE,
        hc(Annotations={"run.oci.keep_original_groups": "1"}),
        "no-runtime-annotations",
    ),
    (
        "io.podman annotation",
        "POST",
        LIBPOD,
        {"image": "x", "annotations": {"io.podman.annotations.privileged": "TRUE"}},
        "no-runtime-annotations",
    ),
    ("runtime path", "POST", CREATE, hc(Runtime="/bin/sh"), "known-runtimes"),
    ("cgroup parent", "POST", CREATE, hc(CgroupParent="/"), "no-cgroup-parent"),
    ("ContainerIDFile", "POST", CREATE, hc(ContainerIDFile="/etc/x"), "no-host-files"),
    (
        "log path, upper case key",
        "POST",
        CREATE,
        hc(LogConfig={"Type": "k8s-file", "Config": {"PATH": "/etc/x"}}),
        "no-host-files",
    ),
    ("libpod init_path", "POST", LIBPOD, {"image": "x", "init_path": "/bin/sh"}, "no-host-files"),
    (
        "libpod base_hosts_file",
        "POST",
        LIBPOD,
        {"image": "x", "base_hosts_file": "/etc/shadow"},
        "no-host-files",
    ),
    (
        "start with checkpoint-dir",
        "POST",
        "/v1.41/containers/abc/start?checkpoint=c&checkpoint-dir=/etc",
        None,
        "no-host-files",
    ),
    ("image dir: transport", "POST", CREATE, {"Image": "dir:/etc"}, "registry-images-only"),
    (
        "libpod image docker-archive:",
        "POST",
        LIBPOD,
        {"image": "docker-archive:/root/x.tar"},
        "registry-images-only",
    ),
    (
        "pull from docker-daemon:",
        "POST",
        "/v1.41/images/create?fromImage=docker-daemon%3Ax",
        None,
        "registry-images-only",
    ),
    (
        "import from a host file",
        "POST",
        "/v1.41/images/create?fromSrc=file%3A%2F%2F%2Fetc%2Fshadow",
        None,
        "registry-images-only",
    ),
    (
        "libpod push to oci-archive:",
        "POST",
        "/v4.3.0/libpod/images/x/push?destination=oci-archive%3A%2Froot%2Fx",
        None,
        "registry-images-only",
    ),
    # -- privileged, exec and legacy start -------------------------------------------
    (
        "exec privileged",
        "POST",
        "/v1.41/containers/abc/exec",
        {"Cmd": ["sh"], "Privileged": True},
        "no-privileged",
    ),
    (
        "libpod exec privileged",
        "POST",
        "/v4.3.0/libpod/containers/abc/exec",
        {"Cmd": ["sh"], "privileged": True},
        "no-privileged",
    ),
    (
        "exec privileged, lower case",
        "POST",
        "/v1.41/containers/abc/exec",
        {"Cmd": ["sh"], "privileged": True},
        "no-privileged",
    ),
    (
        "legacy start body, Binds",
        "POST",
        "/v1.23/containers/abc/start",
        {"Binds": ["/:/h"]},
        "bind-mount-paths",
    ),
    (
        "legacy start body, Privileged",
        "POST",
        "/v1.23/containers/abc/start",
        {"Privileged": True},
        "no-privileged",
    ),
    (
        "start body on a new API version",
        "POST",
        "/v1.41/containers/abc/start",
        {"HostConfig": {"Privileged": True}},
        "no-privileged",
    ),
    # -- builds ------------------------------------------------------------------
    ("build networkmode host", "POST", BUILD + "&networkmode=host", None, "no-build-host-access"),
    ("build NetworkMode (Podman folds case)", "POST", BUILD + "&NetworkMode=host", None, "400"),
    (
        "build networkmode twice",
        "POST",
        BUILD + "&networkmode=bridge&networkmode=host",
        None,
        "400",
    ),
    (
        "build networkmode encoded",
        "POST",
        BUILD + "&networkmode=%68ost",
        None,
        "no-build-host-access",
    ),
    ("Podman build without nsoptions", "POST", "/v1.41/build", None, "no-build-host-access"),
    (
        "nsoptions network host",
        "POST",
        "/v1.41/build?nsoptions=%5B%7B%22name%22%3A%22network%22%2C%22host%22%3Atrue%7D%5D",
        None,
        "no-build-host-access",
    ),
    (
        "nsoptions pid host",
        "POST",
        "/v1.41/build?nsoptions=%5B%7B%22Name%22%3A%22pid%22%2C%22Host%22%3Atrue%7D%5D",
        None,
        "no-build-host-access",
    ),
    (
        "build bind volume",
        "POST",
        BUILD + "&volume=%5B%22%2F%3A%2Fh%22%5D",
        None,
        "no-build-host-access",
    ),
    (
        "build device",
        "POST",
        BUILD + "&devices=%5B%22%2Fdev%2Fsda%22%5D",
        None,
        "no-build-host-access",
    ),
    (
        "build secret climbing out of the context",
        "POST",
        BUILD + "&secrets=%5B%22id%3Dx%2Csrc%3D..%2F..%2Fetc%2Fshadow%22%5D",
        None,
        "no-build-host-access",
    ),
    (
        "build remote is a server path",
        "POST",
        BUILD + "&remote=%2Fetc",
        None,
        "no-build-host-access",
    ),
    (
        "build dockerfile is a server path",
        "POST",
        BUILD + "&dockerfile=%2Fetc%2Fshadow",
        None,
        "no-build-host-access",
    ),
    (
        "build isolation chroot",
        "POST",
        LIBPOD_BUILD + "&isolation=chroot",
        None,
        "no-build-host-access",
    ),
    # libpod reads isolation with strconv.Atoi first (2 = IsolationChroot), then
    # buildah lower-cases the name (fixed here).
    (
        "build isolation 2 (chroot by number)",
        "POST",
        LIBPOD_BUILD + "&isolation=2",
        None,
        "no-build-host-access",
    ),
    ("build isolation +2", "POST", LIBPOD_BUILD + "&isolation=%2B2", None, "no-build-host-access"),
    (
        "build isolation 02",
        "POST",
        LIBPOD_BUILD + "&isolation=02",
        None,
        "no-build-host-access",
    ),
    (
        "build isolation hyperv (engines refuse it)",
        "POST",
        BUILD + "&isolation=hyperv",
        None,
        ALLOW,
    ),
    (
        "build isolation CHROOT",
        "POST",
        LIBPOD_BUILD + "&isolation=CHROOT",
        None,
        "no-build-host-access",
    ),
    # libpod hands the first tag to buildah as the commit destination, transports
    # included (fixed here): an image archive written over a host file.
    (
        "build tag oci-archive: on the host",
        "POST",
        LIBPOD_BUILD + "&t=oci-archive%3A%2Froot%2F.ssh%2Fauthorized_keys",
        None,
        "registry-images-only",
    ),
    (
        "build tag dir:",
        "POST",
        LIBPOD_BUILD + "&t=dir%3A%2Fetc%2Fcron.d",
        None,
        "registry-images-only",
    ),
    (
        "build from docker-archive:",
        "POST",
        LIBPOD_BUILD + "&from=docker-archive%3A%2Fx.tar",
        None,
        "registry-images-only",
    ),
    (
        "build capability",
        "POST",
        BUILD + "&addcaps=%5B%22SYS_ADMIN%22%5D",
        None,
        "no-build-host-access",
    ),
    (
        "build unconfined",
        "POST",
        BUILD + "&securityopt=%5B%22seccomp%3Dunconfined%22%5D",
        None,
        "no-build-host-access",
    ),
    # -- holes in stages owned elsewhere ------------------------------------------
    (
        "bind of /tmp exposes the denied sockets under it",
        "POST",
        CREATE,
        hc(Binds=["/tmp:/t"]),
        "bind-mount-paths",
    ),
    (
        "bind of /home exposes every ~/.ssh",
        "POST",
        CREATE,
        hc(Binds=["/home:/h"]),
        "bind-mount-paths",
    ),
    (
        "slirp4netns allow_host_loopback",
        "POST",
        CREATE,
        hc(NetworkMode="slirp4netns:allow_host_loopback=true"),
        "no-host-namespaces",
    ),
    (
        "libpod slirp4netns allow_host_loopback",
        "POST",
        LIBPOD,
        {
            "image": "x",
            "netns": {"nsmode": "slirp4netns"},
            "network_options": {"slirp4netns": ["allow_host_loopback=true"]},
        },
        "no-host-namespaces",
    ),
    (
        "join the namespaces of an existing container",
        "POST",
        CREATE,
        hc(PidMode="container:node-exporter", NetworkMode="container:node-exporter"),
        "no-host-namespaces",
    ),
    (
        "VolumesFrom a container with host binds",
        "POST",
        CREATE,
        hc(VolumesFrom=["admin-backup"]),
        "volumes-from",
    ),
]


def _name(row: Any) -> str:
    values = row.values if hasattr(row, "values") else row
    return str(values[0])


@pytest.mark.parametrize(
    ("name", "method", "target", "body", "expected"), ROWS, ids=[_name(row) for row in ROWS]
)
def test_bypass_table(name: str, method: str, target: str, body: Any, expected: str) -> None:
    assert decide(method, target, body) == expected


def test_cases_tried_are_counted() -> None:
    """The report quotes this number; keep it honest."""
    assert len(ROWS) >= 150


# A bind swapped for a symlink between create and start: sockproxy re-checks
# a start against the engine's own record of the container's mounts
# (sockproxy/lookup.py), which needs an engine: see
# tests/e2e/test_policy.py::test_a_bind_swapped_for_a_symlink_before_start_is_refused.
