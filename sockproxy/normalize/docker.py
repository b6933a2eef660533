"""Normalise stage, Docker Engine API bodies (which Podman's compat API reads too).

In: a body of one of the Docker-shaped kinds. Out: the model's specs. Where
Docker and Podman's compat handler (pkg/api/handlers/compat/containers_create.go
``cliOpts``) read a field differently, the stricter reading is kept; where
Podman re-joins fields into a CLI string that it splits again (``--mount``
``key=value,...``, ``--device src:dst:perm``, ``--sysctl k=v``, ``--tmpfs
path:opts``), a value holding the separator is refused as ambiguous.

Container create: moby runconfig ``decodeContainerConfig``. Docker 20.10's
``ContainerConfigWrapper`` also reads HostConfig fields at the top level of
the body (API < 1.24 clients); its ``getHostConfig`` uses them only when
``HostConfig`` is absent or null, and otherwise keeps the nested one (taking
just ``VolumeDriver`` and a few resource limits from the top level when the
nested one leaves them empty). Docker 28 and Podman never read the top level,
so reading it only when ``HostConfig`` is absent is the strictest reading
and matches every engine that reads it. ``POST /containers/{id}/start`` with a
body (API < 1.24) is decoded by the same wrapper.
"""

from __future__ import annotations

from sockproxy import jsonread
from sockproxy.jsonread import AmbiguousBody, InvalidBody, JsonValue
from sockproxy.model import (
    ContainerSpec,
    Device,
    ExecSpec,
    Mount,
    NamespaceMode,
    PluginSpec,
    VolumeSpec,
)
from sockproxy.normalize import binds, filesystems, namespaces, security
from sockproxy.normalize.draft import Draft
from sockproxy.normalize.fields import Fields, Notes, strings
from sockproxy.normalize.query import Query

# moby api/types/container HostConfig and its embedded Resources: the fields the
# 20.10 wrapper reads at the top level of a create or start body.
_HOST_CONFIG_FIELDS = (
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
    "AutoRemove", "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd",
    "CapDrop", "Capabilities", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts",
    "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged",
    "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode",
    "UsernsMode", "ShmSize", "Sysctls", "Runtime", "Isolation", "Mounts", "MaskedPaths",
    "ReadonlyPaths", "Init", "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight",
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests",
    "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap", "MemorySwappiness",
    "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps",
    "IOMaximumBandwidth",
)  # fmt: skip

_NAMESPACE_FIELDS = (
    ("pid", "PidMode"),
    ("ipc", "IpcMode"),
    ("net", "NetworkMode"),
    ("uts", "UTSMode"),
    ("user", "UsernsMode"),
    ("cgroup", "CgroupnsMode"),
)

# Log options whose value is a place on the host the engine reads or connects to.
_ADDRESS_SCHEMES = ("unix://", "unixgram://")


def decode(body: bytes | None) -> JsonValue:
    return jsonread.decode(body if body is not None else b"")


# -- containers -------------------------------------------------------------------


def container_create(body: bytes | None, notes: Notes) -> ContainerSpec:
    top = Fields.top(decode(body), "container create body", notes)
    draft = Draft("container create body")
    draft.user = top.text("User")
    draft.image = top.text("Image")
    hc, volume_driver = _host_config(top, notes)
    # Config.Volumes: anonymous volumes for Docker; Podman's compat handler
    # hands each key to its -v parser, where "/:/host" is a bind.
    for key in top.keys("Volumes"):
        draft.mounts.append(binds.parse_bind(key, f'Volumes["{key}"]', volume_driver))
    if hc is not None:
        read_host_config(hc, draft, volume_driver)
    networking = top.child("NetworkingConfig")
    for name in networking.keys("EndpointsConfig"):
        origin = f'{networking.origin("EndpointsConfig")}["{name}"]'
        namespace = namespaces.from_text("net", name, origin)
        if namespace is not None and namespace.mode is not NamespaceMode.PRIVATE:
            draft.add_namespace(namespace)
    return draft.spec()


def container_start(body: bytes | None, query: str, notes: Notes) -> tuple[ContainerSpec, ...]:
    """A legacy start body is a whole HostConfig; ``checkpoint-dir`` is a host directory."""
    draft = Draft("container start body")
    checkpoint_dir = Query(query).get("checkpoint-dir") or ""
    if checkpoint_dir:
        notes.add("checkpoint-dir")
        draft.add_host_file(checkpoint_dir, "checkpoint-dir", "checkpoint-dir")
    if body is not None and body.strip():
        top = Fields.top(decode(body), "container start body", notes)
        hc, volume_driver = _host_config(top, notes)
        if hc is not None:
            read_host_config(hc, draft, volume_driver)
    elif not checkpoint_dir:
        return ()
    return (draft.spec(),)


def container_update(body: bytes | None, notes: Notes) -> ContainerSpec:
    """Docker's ``UpdateConfig`` (Resources at the top level) or libpod's
    ``LinuxResources``: both spell devices ``Devices`` (case-insensitively the
    same key), as ``DeviceMapping`` or as OCI device cgroup rules."""
    top = Fields.top(decode(body), "container update body", notes)
    draft = Draft("container update body")
    draft.cgroup_parent = top.text("CgroupParent")
    for item in top.children("Devices"):
        if item.text("PathOnHost"):
            draft.devices.append(_device_mapping(item))
        rule = oci_device_rule(item)
        if rule:
            draft.device_cgroup_rules.append(rule)
    draft.device_cgroup_rules.extend(top.texts("DeviceCgroupRules"))
    draft.device_requests.extend(_device_request(r) for r in top.children("DeviceRequests"))
    top.text_map("unified")  # cgroup v2 files, noted
    return draft.spec()


def _host_config(top: Fields, notes: Notes) -> tuple[Fields | None, str]:
    """The HostConfig the engine uses, and the volume driver for named volumes."""
    if top.present("HostConfig"):
        hc = top.child("HostConfig")
        legacy_driver = ""
        if top.obj is not None and top.obj.has("VolumeDriver"):
            legacy_driver = top.text("VolumeDriver")
        return hc, hc.text("VolumeDriver") or legacy_driver
    if top.obj is not None and any(top.obj.has(name) for name in _HOST_CONFIG_FIELDS):
        notes.add("legacy HostConfig fields at the top level")
        return top, top.text("VolumeDriver")
    return None, ""


def read_host_config(hc: Fields, draft: Draft, volume_driver: str) -> None:
    """Every HostConfig field that can reach the host."""
    draft.privileged = hc.flag("Privileged")
    for i, raw in enumerate(hc.texts("Binds")):
        draft.mounts.append(binds.parse_bind(raw, f"{hc.origin('Binds')}[{i}]", volume_driver))
    draft.mounts.extend(mount(m, volume_driver) for m in hc.children("Mounts"))
    for path, options in hc.text_map("Tmpfs"):
        origin = f'{hc.origin("Tmpfs")}["{path}"]'
        if ":" in path:
            raise AmbiguousBody(
                f"ambiguous tmpfs {origin}: Podman's compat API splits 'path:options' at ':'"
            )
        draft.mounts.append(Mount("tmpfs", "", path, False, _split(options), origin))
    draft.volumes_from.extend(hc.texts("VolumesFrom"))
    draft.devices.extend(_device_mapping(d) for d in hc.children("Devices"))
    draft.device_requests.extend(_device_request(r) for r in hc.children("DeviceRequests"))
    draft.device_cgroup_rules.extend(hc.texts("DeviceCgroupRules"))
    draft.add_caps(hc.text_slice("CapAdd"))
    draft.add_caps(hc.texts("Capabilities"))  # API 1.40-1.42: the whole set, all granted
    draft.add_caps(hc.text_slice("CapDrop"), drop=True)
    for i, option in enumerate(hc.texts("SecurityOpt")):
        security.apply(draft, option, f"{hc.origin('SecurityOpt')}[{i}]")
    for kind, name in _NAMESPACE_FIELDS:
        draft.add_namespace(namespaces.from_text(kind, hc.text(name), hc.origin(name)))
    draft.sysctls.extend(_kv_map(hc, "Sysctls"))
    draft.runtime = hc.text("Runtime")
    draft.cgroup_parent = hc.text("CgroupParent")
    # moby replaces the default masked / read-only path lists whenever these are
    # non-null; the CLI sends [] for --security-opt systempaths=unconfined.
    for name in ("MaskedPaths", "ReadonlyPaths"):
        if hc.present(name):
            hc.texts(name)
            draft.masked_paths_override = True
    draft.annotations.extend(hc.text_map("Annotations"))
    draft.add_host_file(
        hc.text("ContainerIDFile"), "container-id-file", hc.origin("ContainerIDFile")
    )
    read_log_options(hc.child("LogConfig"), "Type", "Config", draft)
    for name in ("Cgroup", "Isolation", "StorageOpt", "Init", "ExtraHosts", "PortBindings"):
        hc.note_if_set(name)


def read_log_options(log: Fields, driver_field: str, options_field: str, draft: Draft) -> None:
    """Log options naming a host file or socket. Podman's compat API hands the map
    to its ``--log-opt k=v`` parser, which lower-cases the key; ``path`` sets the
    log file the engine writes (specgenutil ``FillOutSpecGen``)."""
    log.text(driver_field)
    seen: set[str] = set()
    for key, value in _kv_map(log, options_field):
        lowered = key.lower()
        origin = f'{log.origin(options_field)}["{key}"]'
        if lowered in seen:
            raise AmbiguousBody(f"ambiguous log options: {origin} is given in two spellings")
        seen.add(lowered)
        if lowered == "path":
            draft.add_host_file(value, "log-path", origin)
        elif value.startswith(("/", *_ADDRESS_SCHEMES)):
            draft.add_host_file(value, f"log-opt {key}", origin)


def mount(m: Fields, volume_driver: str) -> Mount:
    """One ``mount.Mount`` (``HostConfig.Mounts[i]``, a service's ``Mounts[i]``).

    Podman's compat handler (pkg/api/handlers/compat/containers_create.go
    ``cliOpts``, 4.3) runs ``os.MkdirAll(Source, 0o755)`` on the host for every
    absolute ``Source`` of every type before it looks at the type, so a tmpfs or
    image mount with ``Source: "/etc/x"`` creates that directory as root. Such a
    source is reported as a bind of that path (Docker refuses a Source on tmpfs
    mounts, and image sources are references, so no real client sends one).
    """
    found = _mount(m, volume_driver)
    if found.kind not in ("bind", "volume") and found.source.startswith("/"):
        return Mount(
            "bind", found.source, found.target, found.read_only,
            (*found.options, f"type={found.kind}"), found.origin,
        )  # fmt: skip
    return found


def _mount(m: Fields, volume_driver: str) -> Mount:
    origin = m.origin()
    mtype, source, target = m.text("Type"), m.text("Source"), m.text("Target")
    read_only = m.flag("ReadOnly")
    consistency = m.text("Consistency")
    bind_opts, volume_opts = m.child("BindOptions"), m.child("VolumeOptions")
    tmpfs_opts, image_opts = m.child("TmpfsOptions"), m.child("ImageOptions")
    propagation = bind_opts.text("Propagation")
    for name, value in (
        ("Type", mtype),
        ("Source", source),
        ("Target", target),
        ("Consistency", consistency),
        ("BindOptions.Propagation", propagation),
    ):
        if "," in value or '"' in value:
            raise AmbiguousBody(
                f"ambiguous mount {origin}: {name} holds ',' or '\"', which Podman's compat "
                "API would read as more --mount options"
            )
    options: list[str] = [propagation] if propagation else []
    for flag, option in (
        ("NonRecursive", "bind-nonrecursive"),
        ("CreateMountpoint", "create-mountpoint"),
        ("ReadOnlyNonRecursive", "ro-non-recursive"),
        ("ReadOnlyForceRecursive", "ro-force-recursive"),
    ):
        if bind_opts.flag(flag):
            options.append(option)
    if consistency:
        options.append(f"consistency={consistency}")
    if mtype == "bind":
        return Mount("bind", source, target, read_only, tuple(options), origin)
    if mtype == "volume":
        driver_config = volume_opts.child("DriverConfig")
        driver = driver_config.text("Name") or volume_driver
        driver_options = driver_config.text_map("Options")
        if subpath := volume_opts.text("Subpath"):
            options.append(f"subpath={subpath}")
        if volume_opts.flag("NoCopy"):
            options.append("nocopy")
        volume_opts.text_map("Labels")
        host = filesystems.volume_source(driver, driver_options, driver_config.origin("Options"))
        kind = "volume"
        if host:  # the local driver with o=bind, device=PATH (or a device, or a pseudo-fs)
            kind, options = "bind", [*options, f"volume={source}"]
        elif source.startswith("/"):  # not a volume name: Podman's compat API mkdirs it
            kind, host = "bind", source
        return Mount(
            kind, host or source, target, read_only, tuple(options), origin,
            volume_driver=driver, volume_options=driver_options,
        )  # fmt: skip
    if mtype == "tmpfs":
        if size := tmpfs_opts.number("SizeBytes"):
            options.append(f"size={size}")
        if mode := tmpfs_opts.number("Mode"):
            options.append(f"mode={mode:o}")
        options.extend("=".join(pair) for pair in _string_lists(tmpfs_opts, "Options"))
        return Mount("tmpfs", source, target, read_only, tuple(options), origin)
    if mtype == "image":
        if subpath := image_opts.text("Subpath"):
            options.append(f"subpath={subpath}")
        return Mount("image", source, target, read_only, tuple(options), origin)
    # npipe (Windows), cluster (CSI), or refused by the engine.
    return Mount("other", source, target, read_only, (f"type={mtype}", *options), origin)


def _device_mapping(d: Fields) -> Device:
    host, container = d.text("PathOnHost"), d.text("PathInContainer")
    permissions = d.text("CgroupPermissions")
    if ":" in host + container + permissions:
        raise AmbiguousBody(
            f"ambiguous device {d.origin()}: Podman's compat API joins it as "
            "'host:container:permissions' and splits it again at ':'"
        )
    return Device(host, container or host, permissions or "rwm", d.origin())


def _device_request(r: Fields) -> str:
    parts = [f"driver={r.text('Driver') or 'default'}", f"count={r.number('Count')}"]
    if ids := r.texts("DeviceIDs"):
        parts.append("ids=" + ",".join(ids))
    if capabilities := _string_lists(r, "Capabilities"):
        parts.append("capabilities=" + "|".join(",".join(c) for c in capabilities))
    if options := r.text_map("Options"):
        parts.append("options=" + ",".join(f"{k}={v}" for k, v in options))
    return " ".join(parts)


def oci_device_rule(rule: Fields) -> str:
    """An OCI ``LinuxDeviceCgroup`` that allows access, as ``type major:minor access``."""
    if not rule.flag("allow"):
        return ""
    major = str(rule.number("major")) if rule.present("major") else "*"
    minor = str(rule.number("minor")) if rule.present("minor") else "*"
    return f"{rule.text('type') or 'a'} {major}:{minor} {rule.text('access') or 'rwm'}"


def _kv_map(fields: Fields, name: str) -> tuple[tuple[str, str], ...]:
    """A map Podman's compat API re-joins as ``k=v`` strings and splits at the first ``=``."""
    pairs = fields.text_map(name)
    for key, _ in pairs:
        if "=" in key:
            raise AmbiguousBody(
                f'ambiguous key {fields.origin(name)}["{key}"]: Podman joins it as key=value '
                "and splits it again at the first '='"
            )
    return pairs


def _split(options: str) -> tuple[str, ...]:
    return tuple(o for o in options.split(",") if o)


def _string_lists(fields: Fields, name: str) -> list[tuple[str, ...]]:
    """A ``[][]string`` field."""
    origin = fields.origin(name)
    return [strings(item, f"{origin}[{i}]") for i, item in enumerate(fields.values(name))]


# -- exec, volumes, networks --------------------------------------------------


def exec_create(body: bytes | None, notes: Notes) -> ExecSpec:
    """Docker's ``ExecConfig``; Podman's libpod exec create embeds the same struct."""
    top = Fields.top(decode(body), "exec create body", notes)
    return ExecSpec(privileged=top.flag("Privileged"), user=top.text("User"))


def volume_create(body: bytes | None, notes: Notes) -> VolumeSpec:
    """Docker's ``volume.CreateOptions`` (Podman's compat handler reads the same)."""
    top = Fields.top(decode(body), "volume create body", notes)
    name, driver = top.text("Name"), top.text("Driver")
    options = top.text_map("DriverOpts")
    top.text_map("Labels")
    if top.present("ClusterVolumeSpec"):
        notes.add("ClusterVolumeSpec")
    source = filesystems.volume_source(driver, options, top.origin("DriverOpts"))
    return VolumeSpec(name=name, driver=driver, options=options, bind_source=source)


def network_connect(body: bytes | None, notes: Notes) -> None:
    """``NetworkConnectRequest`` (libpod: ``NetworkConnectOptions``): read so
    that ownership isolation can check the container it names."""
    top = Fields.top(decode(body), "network connect body", notes)
    top.text("Container")


def network_create(body: bytes | None, notes: Notes) -> None:
    """Docker's ``NetworkCreateRequest`` or libpod's ``Network``: noted only."""
    top = Fields.top(decode(body), "network create body", notes)
    if driver := top.text("Driver"):
        notes.add(f"network driver {driver}")
    for key, value in top.text_map("Options"):
        notes.add(f"network option {key}={value}")
    if interface := top.text("network_interface"):
        notes.add(f"network interface {interface}")
    top.child("IPAM").text("Driver")
    top.child("ConfigFrom").text("Network")


# -- swarm services and plugins --------------------------------------------------


def service(
    body: bytes | None, notes: Notes
) -> tuple[tuple[ContainerSpec, ...], PluginSpec | None]:
    """``swarm.ServiceSpec`` for service create and update."""
    top = Fields.top(decode(body), "service body", notes)
    task = top.child("TaskTemplate")
    containers: tuple[ContainerSpec, ...] = ()
    cs = task.child("ContainerSpec")
    draft = Draft("service TaskTemplate.ContainerSpec")
    if cs.obj is not None:
        draft.user = cs.text("User")
        draft.mounts.extend(mount(m, "") for m in cs.children("Mounts"))
        _privileges(cs.child("Privileges"), draft)
        draft.sysctls.extend(cs.text_map("Sysctls"))
        draft.add_caps(cs.texts("CapabilityAdd"))
        draft.add_caps(cs.texts("CapabilityDrop"), drop=True)
        for name in ("Isolation", "Init", "Hosts", "Secrets", "Configs", "Groups"):
            cs.note_if_set(name)
    for networks in (task.children("Networks"), top.children("Networks")):
        for network in networks:
            target = network.text("Target")
            namespace = namespaces.from_text("net", target, network.origin("Target"))
            if namespace is not None and namespace.mode is not NamespaceMode.PRIVATE:
                draft.add_namespace(namespace)
    log = task.child("LogDriver")
    if log.obj is not None:
        read_log_options(log, "Name", "Options", draft)
    if cs.obj is not None or draft.namespaces or draft.host_files:
        containers = (draft.spec(),)
    plugin = None
    plugin_spec = task.child("PluginSpec")
    runtime = task.text("Runtime")
    if plugin_spec.obj is not None or runtime == "plugin":
        plugin = PluginSpec(tuple(_privilege(p) for p in plugin_spec.children("privileges")))
    return containers, plugin


def _privileges(p: Fields, draft: Draft) -> None:
    """``swarm.Privileges`` in SecurityOpt spelling."""
    selinux = p.child("SELinuxContext")
    if selinux.flag("Disable"):
        draft.security_opt.append("label=disable")
    for name in ("User", "Role", "Type", "Level"):
        if value := selinux.text(name):
            draft.security_opt.append(f"label={name.lower()}:{value}")
    seccomp = p.child("Seccomp")
    mode = seccomp.text("Mode")
    if mode == "unconfined":
        draft.security_opt.append("seccomp=unconfined")
    elif mode and mode != "default":
        draft.security_opt.append(f"seccomp={mode}")
    if seccomp.present("Profile"):
        seccomp.text("Profile")
    apparmor = p.child("AppArmor").text("Mode")
    if apparmor == "disabled":
        draft.security_opt.append("apparmor=unconfined")
    elif apparmor and apparmor != "default":
        draft.security_opt.append(f"apparmor={apparmor}")
    if p.flag("NoNewPrivileges"):
        draft.security_opt.append("no-new-privileges=true")
    credential = p.child("CredentialSpec")
    for name in ("Config", "File", "Registry"):
        credential.text(name)


def plugin(body: bytes | None, notes: Notes) -> PluginSpec:
    """Plugin pull/upgrade: the privileges granted, ``[{"Name", "Value"}]``; plugin
    set: ``["KEY=value", "mount.source=/path"]``."""
    value = decode(body)
    if value is None:
        return PluginSpec()
    if not isinstance(value, list):
        raise InvalidBody("invalid JSON body: plugin privileges must be an array")
    notes.add("plugin privileges")
    privileges = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            privileges.append(f"set: {item}")
            continue
        obj = jsonread.as_object(item, f"privileges[{i}]")
        privileges.append(_privilege(Fields(obj, f"privileges[{i}].", notes)))
    return PluginSpec(tuple(privileges))


def _privilege(p: Fields) -> str:
    name, values = p.text("Name"), p.texts("Value")
    p.text("Description")
    return f"{name}: {','.join(values)}" if values else name
