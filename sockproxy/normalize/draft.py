"""A ContainerSpec while it is being read: mutable lists, frozen at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from sockproxy.model import ContainerSpec, Device, HostFile, Mount, Namespace
from sockproxy.normalize import caps


@dataclass(slots=True)
class Draft:
    origin: str
    privileged: bool = False
    user: str = ""
    mounts: list[Mount] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    device_requests: list[str] = field(default_factory=list)
    device_cgroup_rules: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    sysctls: list[tuple[str, str]] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    runtime: str = ""
    cgroup_parent: str = ""
    unmasked_paths: list[str] = field(default_factory=list)
    masked_paths_override: bool = False
    annotations: list[tuple[str, str]] = field(default_factory=list)
    host_files: list[HostFile] = field(default_factory=list)
    image: str = ""

    def add_caps(self, names: tuple[str, ...], *, drop: bool = False) -> None:
        target = self.cap_drop if drop else self.cap_add
        target.extend(caps.normalize(name) for name in names)

    def add_namespace(self, namespace: Namespace | None) -> None:
        if namespace is not None:
            self.namespaces.append(namespace)

    def add_host_file(self, path: str, purpose: str, origin: str) -> None:
        if path:
            self.host_files.append(HostFile(path, purpose, origin))

    def spec(self) -> ContainerSpec:
        return ContainerSpec(
            privileged=self.privileged,
            user=self.user,
            mounts=tuple(self.mounts),
            devices=tuple(self.devices),
            device_requests=tuple(self.device_requests),
            device_cgroup_rules=tuple(self.device_cgroup_rules),
            cap_add=tuple(dict.fromkeys(self.cap_add)),
            cap_drop=tuple(dict.fromkeys(self.cap_drop)),
            security_opt=tuple(self.security_opt),
            namespaces=tuple(self.namespaces),
            sysctls=tuple(self.sysctls),
            volumes_from=tuple(self.volumes_from),
            runtime=self.runtime,
            cgroup_parent=self.cgroup_parent,
            unmasked_paths=tuple(dict.fromkeys(self.unmasked_paths)),
            masked_paths_override=self.masked_paths_override,
            annotations=tuple(self.annotations),
            host_files=tuple(self.host_files),
            image=self.image,
            origin=self.origin,
        )
