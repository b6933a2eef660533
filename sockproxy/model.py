"""The normalised request: what every check sees, whatever the API flavour.

Normalisers (``normalize/``) turn a classified request and its body, read
as the engine reads it, into a ``Request``. Docker-compatible and libpod
differences end there: checks never look at raw paths, raw JSON or the
flavour. Every item remembers where it came from (``origin``, in the
engine's own field spelling such as ``HostConfig.Binds[0]`` or libpod
``mounts[1]``) so that a refusal can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class NamespaceMode(Enum):
    PRIVATE = "private"  # the engine's default for this namespace
    HOST = "host"  # the host's namespace
    CONTAINER = "container"  # joins another container's namespace
    PATH = "path"  # joins a namespace by a path on the host (/proc/PID/ns/...)
    OTHER = "other"  # anything else the engine accepts (pod, slirp4netns, auto...)


@dataclass(frozen=True, slots=True)
class Namespace:
    kind: str  # "pid" | "ipc" | "net" | "uts" | "user" | "cgroup"
    mode: NamespaceMode
    target: str  # the container, the path, or the raw mode text
    origin: str


@dataclass(frozen=True, slots=True)
class Mount:
    """Anything that makes a host or engine resource visible in a container."""

    kind: str  # "bind" | "volume" | "tmpfs" | "image" | "glob" | "devpts" | "other"
    source: str  # host path for binds and globs; volume or image name otherwise
    target: str
    read_only: bool
    options: tuple[str, ...]  # raw mount options (propagation, upperdir=..., o=...)
    origin: str
    # A named volume whose driver options make it a bind of a host path
    # (local driver with o=bind / type=none and device=PATH).
    volume_driver: str = ""
    volume_options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    host_path: str
    container_path: str
    permissions: str
    origin: str


@dataclass(frozen=True, slots=True)
class HostFile:
    """A host path the engine itself will read or write for this request."""

    path: str
    purpose: str  # "container-id-file" | "log-path" | "init-path" | "seccomp-profile" | ...
    origin: str


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What a container create (or update, or pod/kube/service) asks for."""

    privileged: bool = False
    user: str = ""  # as given; "" means the image default
    mounts: tuple[Mount, ...] = ()
    devices: tuple[Device, ...] = ()
    device_requests: tuple[str, ...] = ()  # GPU and other device requests, described
    device_cgroup_rules: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()  # upper-case, without the CAP_ prefix
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()  # normalised "key=value" (seccomp=unconfined, ...)
    namespaces: tuple[Namespace, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    volumes_from: tuple[str, ...] = ()
    runtime: str = ""
    cgroup_parent: str = ""
    unmasked_paths: tuple[str, ...] = ()  # paths the default masking no longer hides
    masked_paths_override: bool = False  # MaskedPaths / ReadonlyPaths replaced
    annotations: tuple[tuple[str, str], ...] = ()
    host_files: tuple[HostFile, ...] = ()
    image: str = ""  # the image reference as given (transports such as dir: reach the host)
    origin: str = ""  # e.g. "container create body", "play/kube containers[0]"


@dataclass(frozen=True, slots=True)
class ExecSpec:
    privileged: bool = False
    user: str = ""


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    name: str = ""
    driver: str = ""
    options: tuple[tuple[str, str], ...] = ()
    # Set when the options make the volume a bind of a host path.
    bind_source: str = ""


# BuildSpec.network_mode when a build asks for no network isolation: Podman
# then runs RUN steps in the host's network, Docker in a bridge network.
PODMAN_DEFAULT_NETWORK = "host (podman default without nsoptions)"


@dataclass(frozen=True, slots=True)
class BuildSpec:
    network_mode: str = ""  # "", "host", "none", ...
    isolation: str = ""
    options: tuple[tuple[str, str], ...] = ()  # other query parameters that reach the host


@dataclass(frozen=True, slots=True)
class PluginSpec:
    privileges: tuple[str, ...] = ()  # "name: value" for each privilege granted


@dataclass(frozen=True, slots=True)
class Request:
    """One classified, normalised request."""

    operation: str
    section: str
    containers: tuple[ContainerSpec, ...] = ()  # several for pods, kube and services
    exec: ExecSpec | None = None
    volume: VolumeSpec | None = None
    build: BuildSpec | None = None
    plugin: PluginSpec | None = None
    # Image references in query parameters: (parameter, value) - pull sources,
    # push destinations, import sources, tag targets.
    image_refs: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())  # what the normaliser looked at, for explain

    @property
    def has_specs(self) -> bool:
        """Is there anything besides the operation for checks to look at?
        (Every spec field above must be named here, or its checks never run.)"""
        return bool(
            self.containers
            or self.exec
            or self.volume
            or self.build
            or self.plugin
            or self.image_refs
        )
