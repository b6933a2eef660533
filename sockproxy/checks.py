"""The check kinds a policy can use: one small pure function each.

A check sees only the normalised ``Request`` (never raw JSON, raw paths or
the API flavour) and its rule's parameters, and yields one ``Violation`` per
thing it refuses: a sentence naming the field in the engine's own spelling,
and, where one of the rule's parameters could allow exactly that thing, which
parameter and what value (``sockproxy suggest`` relaxes rules with these).
Policies refer to checks by their kind name; a rule adds an id, a mode and a
message.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sockproxy import hostpaths
from sockproxy.model import (
    PODMAN_DEFAULT_NETWORK,
    ContainerSpec,
    Mount,
    NamespaceMode,
    Request,
)


@dataclass(frozen=True, slots=True)
class Context:
    """Facts about this host a check may need."""

    own_sockets: tuple[str, ...] = ()  # sockproxy's listeners and upstream
    engine: str = ""  # "podman" or "docker" when known (GET /version at start-up)


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing a check refuses.

    ``param`` (spelled as in policy files) and ``subject`` say how the rule
    could allow this thing and little else: for an allow list, the value to
    add (a capability, a resolved bind source, a device path); for a deny
    list (``deny``, ``kinds``), the entry that matched; for a boolean, the
    value to set. Both are empty when no parameter can (then only turning
    the rule off would). Subjects go to the audit trail: names and paths,
    never bodies or credentials.
    """

    text: str
    param: str = ""
    subject: str = ""


Params = Mapping[str, Any]
CheckFn = Callable[[Params, Request, Context], Iterator[Violation]]


@dataclass(frozen=True, slots=True)
class Param:
    kind: str  # "strings" | "bool"
    default: Any
    help: str


@dataclass(frozen=True, slots=True)
class CheckKind:
    name: str
    help: str
    params: Mapping[str, Param]
    fn: CheckFn


REGISTRY: dict[str, CheckKind] = {}


def check(name: str, help: str, **params: Param) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY[name] = CheckKind(name, help, params, fn)
        return fn

    return register


def _containers(request: Request) -> Iterator[ContainerSpec]:
    yield from request.containers


def _where(origin: str) -> str:
    return f" ({origin})" if origin else ""


MAX_SUBJECT = 200  # longer values (inline seccomp profiles) are never named as subjects


# -- privileges -----------------------------------------------------------------


@check("privileged", "Refuse privileged containers and privileged exec sessions.")
def privileged(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        if spec.privileged:
            yield Violation(f"privileged container{_where(spec.origin)}")
    if request.exec is not None and request.exec.privileged:
        yield Violation("privileged exec session")


@check(
    "capabilities",
    "Refuse added capabilities outside an allowed set (ALL is never allowed).",
    allow=Param("strings", [], "capability names without CAP_, e.g. NET_BIND_SERVICE"),
)
def capabilities(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    allowed = {c.upper().removeprefix("CAP_") for c in params["allow"]}
    for spec in _containers(request):
        for cap in spec.cap_add:
            if cap == "ALL":  # never allowed: no parameter can name it
                yield Violation(f"capability {cap} added{_where(spec.origin)}")
            elif cap not in allowed:
                yield Violation(f"capability {cap} added{_where(spec.origin)}", "allow", cap)


@check(
    "security-options",
    "Refuse security options outside an allowed list (unconfined seccomp, AppArmor "
    "or SELinux, custom seccomp profiles, systempaths=unconfined).",
    allow=Param("strings", [], "glob patterns of key=value options, e.g. no-new-privileges*"),
)
def security_options(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    patterns = params["allow"]
    for spec in _containers(request):
        for option in spec.security_opt:
            if not any(fnmatch.fnmatchcase(option, p) for p in patterns):
                shown = option if len(option) <= 60 else option[:57] + "..."
                text = f"security option {shown}{_where(spec.origin)}"
                # A long option is an inline profile: too much to audit or to name.
                if len(option) <= MAX_SUBJECT:
                    yield Violation(text, "allow", option)
                else:
                    yield Violation(text)


@check("masked-paths", "Refuse unmasking /proc and /sys paths or replacing the masked set.")
def masked_paths(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        if spec.masked_paths_override:
            yield Violation(f"masked or read-only paths replaced{_where(spec.origin)}")
        for path in spec.unmasked_paths:
            yield Violation(f"{path} unmasked{_where(spec.origin)}")


@check(
    "runtime",
    "Refuse OCI runtimes outside an allowed list.",
    allow=Param("strings", ["", "runc", "crun", "io.containerd.runc.v2"], "runtime names"),
)
def runtime(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        if spec.runtime not in params["allow"]:
            yield Violation(f"runtime {spec.runtime}{_where(spec.origin)}", "allow", spec.runtime)


@check("cgroup-parent", "Refuse placing containers under a chosen cgroup parent.")
def cgroup_parent(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        if spec.cgroup_parent:
            yield Violation(f"cgroup parent {spec.cgroup_parent}{_where(spec.origin)}")


@check(
    "oci-annotations",
    "Refuse OCI annotations the runtime or engine acts on.",
    deny=Param(
        "strings",
        [
            "run.oci.*",  # crun acts on these (handlers, groups, cgroup settings)
            "org.systemd.property.*",  # unit properties for the container's scope
            "io.podman.annotations.*",  # Podman maps these to container options
            "io.containers.trace-syscall",  # an OCI hook writing a host path
            "io.kubernetes.cri-o.Devices",
            "io.kubernetes.cri-o.UnifiedCgroup*",
            "io.kubernetes.cri-o.userns-mode",
            "io.kubernetes.cri-o.cgroup2-mount-hierarchy-rw",
            # (Podman sets informational ones such as io.kubernetes.cri-o.TTY
            # on every container: those pass.)
        ],
        "glob patterns of annotation keys",
    ),
)
def oci_annotations(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for key, _ in spec.annotations:
            pattern = next((p for p in params["deny"] if fnmatch.fnmatchcase(key, p)), None)
            if pattern is not None:
                yield Violation(f"annotation {key}{_where(spec.origin)}", "deny", pattern)


@check(
    "host-files",
    "Refuse options that make the engine read or write a host file "
    "(ContainerIDFile, log path, init path, seccomp profile path, hosts file...).",
)
def host_files(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for item in spec.host_files:
            yield Violation(f"host file {item.path} as {item.purpose}{_where(item.origin)}")


@check(
    "exec-user-root",
    "Refuse exec sessions that run as root (user empty, 0 or root).",
)
def exec_user_root(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    if request.exec is not None:
        user = request.exec.user.split(":", 1)[0]
        if user in ("", "0", "root"):
            yield Violation("exec session as root")


# -- host resources -----------------------------------------------------------------


def _host_sources(request: Request) -> Iterator[tuple[str, str]]:
    """Every host path a request would mount: (source, origin)."""
    for spec in _containers(request):
        for mount in spec.mounts:
            source = _mount_host_source(mount)
            if source is not None:
                yield source, mount.origin
    if request.volume is not None and request.volume.bind_source:
        yield request.volume.bind_source, "volume create DriverOpts"


def _mount_host_source(mount: Mount) -> str | None:
    if mount.kind in ("bind", "glob"):
        return mount.source
    if mount.kind == "volume":
        options = dict(mount.volume_options)
        if mount.volume_driver in ("", "local") and "device" in options:
            kinds = {options.get("type", ""), *options.get("o", "").split(",")}
            if kinds & {"bind", "rbind", "none"}:
                return options["device"]
    return None


@check(
    "bind-mounts",
    "Bind mounts (and volumes that are binds) only from strictly inside allowed host "
    "paths or of exactly an exact one, never from or above denied ones. Sources are "
    "cleaned and resolved through symlinks on this host, and compared by path component.",
    allow=Param("strings", [], "host directories binds may come from inside (globs: /home/*)"),
    exact=Param("strings", [], "host paths that may be bound themselves, nothing inside or above"),
    deny=Param("strings", [], "names (.ssh) or absolute globs (/run/user/*) never bound"),
)
def bind_mounts(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    roots = params["allow"]
    exact = {hostpaths.resolve(path) for path in params["exact"]}
    for source, origin in _host_sources(request):
        if not source.startswith("/"):
            yield Violation(f"bind mount of relative path {source}{_where(origin)}")
            continue
        resolved = hostpaths.resolve(source)
        shown = source if resolved == hostpaths.clean(source) else f"{source} (-> {resolved})"
        if resolved not in exact and not any(hostpaths.below(resolved, root) for root in roots):
            text = f"bind mount of {shown}{_where(origin)} is outside the allowed paths"
            yield Violation(text, "exact", resolved)
            # No `continue`: enforcing stops at the first violation anyway; in
            # warn mode the deny findings below are what an `exact` entry
            # would run into next, so the audit names them now.
        for pattern in params["deny"]:
            if hostpaths.matches(resolved, pattern) or hostpaths.matches(
                hostpaths.clean(source), pattern
            ):
                text = f"bind mount of {shown}{_where(origin)} matches denied {pattern}"
                yield Violation(text, "deny", pattern)
                break
            try:
                exposed = hostpaths.contains(resolved, pattern)
            except OSError as exc:  # can't tell: refuse
                yield Violation(f"bind mount of {shown}{_where(origin)}: {exc}")
                break
            if exposed:
                text = f"bind mount of {shown}{_where(origin)} holds denied {pattern}"
                yield Violation(text, "deny", pattern)
                break


@check(
    "engine-socket",
    "Refuse mounting an engine socket (Docker, Podman, containerd, CRI-O, "
    "sockproxy's own), any socket file, or a directory that holds one.",
)
def engine_socket(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    sources = list(_host_sources(request))
    if not sources:
        return
    sockets = hostpaths.engine_sockets(ctx.own_sockets)
    for source, origin in sources:
        if not source.startswith("/"):
            continue
        exposed = hostpaths.reaches_socket(hostpaths.resolve(source), sockets)
        if exposed is not None:
            yield Violation(f"bind mount of {source}{_where(origin)} exposes the socket {exposed}")


@check(
    "mount-options",
    "Refuse mount options that redirect writes or propagate mounts to the host.",
    deny=Param(
        "strings",
        ["upperdir=*", "workdir=*", "shared", "rshared"],
        "glob patterns of mount options",
    ),
)
def mount_options(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for mount in spec.mounts:
            for option in mount.options:
                pattern = next((p for p in params["deny"] if fnmatch.fnmatchcase(option, p)), None)
                if pattern is not None:
                    yield Violation(f"mount option {option}{_where(mount.origin)}", "deny", pattern)


@check(
    "devices",
    "Refuse host devices (outside an allowed list), device requests (GPUs) and "
    "device cgroup rules.",
    allow=Param("strings", [], "host device paths that may be passed through"),
)
def devices(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for device in spec.devices:
            path = hostpaths.clean(device.host_path)
            if path not in params["allow"]:
                yield Violation(f"device {device.host_path}{_where(device.origin)}", "allow", path)
        for description in spec.device_requests:
            yield Violation(f"device request {description}{_where(spec.origin)}")
        for rule in spec.device_cgroup_rules:
            yield Violation(f"device cgroup rule {rule}{_where(spec.origin)}")


@check(
    "host-namespaces",
    "Refuse the host's namespaces (and namespaces joined by host path); joining "
    "another container's namespace is allowed unless allow-join is false.",
    kinds=Param(
        "strings", ["pid", "ipc", "net", "uts", "user", "cgroup"], "namespace kinds checked"
    ),
    allow_join=Param("bool", True, "whether joining another container's namespace is allowed"),
)
def host_namespaces(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for ns in spec.namespaces:
            if ns.kind not in params["kinds"]:
                continue
            if ns.mode is NamespaceMode.HOST:
                yield Violation(f"host {ns.kind} namespace{_where(ns.origin)}", "kinds", ns.kind)
            elif ns.kind == "net" and "allow_host_loopback=true" in ns.target.lower():
                # slirp4netns then maps 10.0.2.2 to the host's 127.0.0.1.
                text = f"host loopback reachable from the container{_where(ns.origin)}"
                yield Violation(text, "kinds", ns.kind)
            elif ns.mode is NamespaceMode.PATH:
                text = f"{ns.kind} namespace joined by path {ns.target}{_where(ns.origin)}"
                yield Violation(text, "kinds", ns.kind)
            elif ns.mode is NamespaceMode.CONTAINER and not params["allow_join"]:
                text = f"joins {ns.kind} namespace of {ns.target}{_where(ns.origin)}"
                yield Violation(text, "allow-join", "true")


@check(
    "sysctls",
    "Sysctls only from an allowed list (glob patterns).",
    allow=Param("strings", [], "glob patterns of sysctl names"),
)
def sysctls(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for name, _ in spec.sysctls:
            if not any(fnmatch.fnmatchcase(name, p) for p in params["allow"]):
                yield Violation(f"sysctl {name}{_where(spec.origin)}", "allow", name)


@check("volumes-from", "Refuse mounting the volumes of another container (VolumesFrom).")
def volumes_from(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        for source in spec.volumes_from:
            yield Violation(f"volumes from {source}{_where(spec.origin)}")


@check(
    "build-host-access",
    "Refuse image builds whose steps reach the host: host network, bind mounts, "
    "devices, host secrets, and Podman builds without network isolation.",
)
def build_host_access(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    build = request.build
    if build is None:
        return
    if build.network_mode == PODMAN_DEFAULT_NETWORK and ctx.engine == "docker":
        pass  # only Podman builds in the host network when nsoptions is absent
    elif build.network_mode.startswith("host"):
        yield Violation(f"build with network mode {build.network_mode}")
    for key, value in build.options:
        yield Violation(f"build option {key}={value}")


@check("plugin-privileges", "Refuse plugins that ask for any privilege.")
def plugin_privileges(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    if request.plugin is not None:
        for privilege in request.plugin.privileges:
            yield Violation(f"plugin privilege {privilege}")


# containers/image transports (podman pull/push/run accept them): all but a
# registry read or write host paths, or another engine's storage.
HOST_TRANSPORTS = frozenset(
    {
        "dir",
        "oci",
        "oci-archive",
        "docker-archive",
        "docker-daemon",
        "containers-storage",
        "ostree",
        "sif",
        "tarball",
    }
)
_TRANSPORT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def host_transport(reference: str) -> str | None:
    """The transport of an image reference when it is not a registry."""
    match = _TRANSPORT.match(reference.strip())
    if match is not None and match.group(1).lower() in HOST_TRANSPORTS:
        return match.group(1).lower()
    return None


@check(
    "image-transports",
    "Refuse image references with a transport that reads or writes host paths or "
    "another engine (dir:, oci:, oci-archive:, docker-archive:, docker-daemon:, "
    "containers-storage:, ...), and imports from anything but the request body or "
    "an http(s) URL.",
)
def image_transports(params: Params, request: Request, ctx: Context) -> Iterator[Violation]:
    for spec in _containers(request):
        if spec.image and (transport := host_transport(spec.image)):
            yield Violation(
                f"image {spec.image} uses the {transport}: transport{_where(spec.origin)}"
            )
        for mount in spec.mounts:
            if mount.kind == "image" and (transport := host_transport(mount.source)):
                yield Violation(f"image mount {mount.source} uses the {transport}: transport")
    for parameter, value in request.image_refs:
        if transport := host_transport(value):
            yield Violation(f"{parameter}={value} uses the {transport}: transport")
        elif (
            parameter in ("fromSrc", "url")
            and value != "-"
            and not value.startswith(("http://", "https://"))
        ):
            yield Violation(f"import from {value} (only the request body or an http(s) URL)")
