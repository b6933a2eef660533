"""Normalise stage, Podman's libpod API bodies.

In: a libpod body. Out: the model's specs.

* container create: ``specgen.SpecGenerator`` (pkg/specgen/specgen.go, Podman
  4.3), decoded with json-iterator; ``jsonread`` refuses every key spelling
  that could read differently.
* pod create: ``specgen.PodSpecGenerator`` (pkg/specgen/podspecgen.go). The
  handler (pkg/api/handlers/libpod/pods.go ``PodCreate``) decodes the body into
  it, re-encodes it, and decodes that into the infra container's
  SpecGenerator, so only pod fields reach the infra container; ``pod_devices``
  and ``security_opt`` go through the CLI parsers (``FillOutSpecGen``). The
  infra container is returned as one ContainerSpec: the pod's namespaces,
  volumes and devices are what every container of the pod will share.
* volume create: ``entities.VolumeCreateOptions`` (``Options`` are the local
  driver's mount options, see ``filesystems``).
"""

from __future__ import annotations

from sockproxy.model import ContainerSpec, Mount, Namespace, NamespaceMode, VolumeSpec
from sockproxy.normalize import binds, filesystems, namespaces, security
from sockproxy.normalize.docker import decode, oci_device_rule
from sockproxy.normalize.draft import Draft
from sockproxy.normalize.fields import Fields, Notes, strings

_NAMESPACE_FIELDS = (
    ("pid", "pidns"),
    ("ipc", "ipcns"),
    ("net", "netns"),
    ("uts", "utsns"),
    ("user", "userns"),
    ("cgroup", "cgroupns"),
)

# Fields noted for explain although no check needs them yet.
_NOTED = (
    "env_host",  # the service's own environment copied into the container
    "hostusers",
    "secrets",
    "secret_env",
    "chroot_directories",
    "personality",
    "sdnotifyMode",
    "systemd",
    "pod",
    "idmappings",
    "hostadd",
    "unified",
    "storage_opts",
    "groups",
    "cgroups_mode",
    "r_limits",
    "oom_score_adj",
    "image_volume_mode",
)


def container_create(body: bytes | None, notes: Notes) -> ContainerSpec:
    top = Fields.top(decode(body), "container create body", notes)
    draft = Draft("container create body")
    draft.privileged = top.flag("privileged")
    draft.user = top.text("user")
    draft.image = top.text("image")
    _storage(top, draft)
    if rootfs := top.text("rootfs"):
        # A host directory used as the container's root filesystem.
        options = ("rootfs-overlay",) if top.flag("rootfs_overlay") else ()
        read_only = top.flag("read_only_filesystem")
        draft.mounts.append(Mount("bind", rootfs, "/", read_only, options, top.origin("rootfs")))
    for name in ("devices", "host_device_list"):
        for device in top.children(name):
            draft.devices.append(binds.parse_device(device.text("path"), device.origin()))
    for source in top.texts("devices_from"):
        draft.device_requests.append(f"devices of container {source}")
    for rule in top.children("device_cgroup_rule"):
        if text := oci_device_rule(rule):
            draft.device_cgroup_rules.append(text)
    draft.add_caps(top.texts("cap_add"))
    draft.add_caps(top.texts("cap_drop"), drop=True)
    _security(top, draft)
    _namespaces(top, draft)
    draft.sysctls.extend(top.text_map("sysctl"))
    draft.runtime = top.text("oci_runtime")
    draft.annotations.extend(top.text_map("annotations"))
    log = top.child("log_configuration")
    draft.add_host_file(log.text("path"), "log-path", log.origin("path"))
    log.text("driver")
    log.text_map("options")
    draft.add_host_file(top.text("init_path"), "init-path", top.origin("init_path"))
    draft.add_host_file(
        top.text("conmon_pid_file"), "conmon-pid-file", top.origin("conmon_pid_file")
    )
    draft.add_host_file(top.text("base_hosts_file"), "hosts-file", top.origin("base_hosts_file"))
    for name in _NOTED:
        top.note_if_set(name)
    return draft.spec()


def pod_create(body: bytes | None, notes: Notes) -> ContainerSpec:
    top = Fields.top(decode(body), "pod create body", notes)
    draft = Draft("pod create infra container")
    _storage(top, draft)
    for i, raw in enumerate(top.texts("pod_devices")):
        draft.devices.append(binds.parse_device(raw, f"{top.origin('pod_devices')}[{i}]"))
    for i, option in enumerate(top.texts("security_opt")):
        security.apply(draft, option, f"{top.origin('security_opt')}[{i}]")
    _namespaces(top, draft)
    draft.sysctls.extend(top.text_map("sysctl"))
    origin = top.origin("infra_conmon_pid_file")
    draft.add_host_file(top.text("infra_conmon_pid_file"), "conmon-pid-file", origin)
    for name in (
        "shared_namespaces", "share_parent", "no_infra", "infra_command", "infra_image",
        "hostadd", "idmappings", "exit_policy", "infra_name",
    ):  # fmt: skip
        top.note_if_set(name)
    return draft.spec()


def volume_create(body: bytes | None, notes: Notes) -> VolumeSpec:
    top = Fields.top(decode(body), "volume create body", notes)
    name, driver = top.text("Name"), top.text("Driver")
    options = top.text_map("Options")
    top.text_map("Label")
    top.text_map("Labels")
    source = filesystems.volume_source(driver, options, top.origin("Options"))
    return VolumeSpec(name=name, driver=driver, options=options, bind_source=source)


def _storage(top: Fields, draft: Draft) -> None:
    """Mounts, named/image/overlay volumes, volumes-from, cgroup parent and
    device rules: the fields a container and a pod spell alike."""
    for m in top.children("mounts"):
        draft.mounts.append(_oci_mount(m))
    for v in top.children("volumes"):
        name, dest, options = v.text("Name"), v.text("Dest"), v.texts("Options")
        v.flag("IsAnonymous")
        read_only = "ro" in options and "rw" not in options
        kind = "bind" if name.startswith("/") else "volume"
        draft.mounts.append(Mount(kind, name, dest, read_only, options, v.origin()))
    for v in top.children("image_volumes"):
        read_only = not v.flag("ReadWrite")
        mount = Mount("image", v.text("Source"), v.text("Destination"), read_only, (), v.origin())
        draft.mounts.append(mount)
    for v in top.children("overlay_volumes"):
        # An overlay whose lower layer is a host path (upperdir=/workdir= options
        # are host paths the container writes to).
        options = ("O", *v.texts("options"))
        draft.mounts.append(
            Mount("bind", v.text("source"), v.text("destination"), False, options, v.origin())
        )
    draft.volumes_from.extend(top.texts("volumes_from"))
    draft.cgroup_parent = top.text("cgroup_parent")
    for rule in top.child("resource_limits").children("devices"):
        if text := oci_device_rule(rule):
            draft.device_cgroup_rules.append(text)


def _oci_mount(m: Fields) -> Mount:
    """An OCI ``spec.Mount``: type and options decide what it reaches."""
    mtype, source, target = m.text("type"), m.text("source"), m.text("destination")
    options = m.texts("options")
    m.values("uidMappings")
    m.values("gidMappings")
    kind, host = filesystems.classify(mtype, source, options, m.origin())
    if kind == "volume" and host.startswith("/"):
        kind = "bind"
    read_only = "ro" in options and "rw" not in options
    return Mount(kind, host, target, read_only, options, m.origin())


def _security(top: Fields, draft: Draft) -> None:
    """libpod's security fields in SecurityOpt spelling."""
    draft.security_opt.extend(f"label={o}" for o in top.texts("selinux_opts"))
    if profile := top.text("apparmor_profile"):
        draft.security_opt.append(f"apparmor={profile}")
    if seccomp := top.text("seccomp_profile_path"):
        draft.security_opt.append(f"seccomp={seccomp}")
        security.seccomp_profile(draft, seccomp, top.origin("seccomp_profile_path"))
    policy = top.text("seccomp_policy")
    if policy and policy != "default":  # "image": the profile an image's label names
        draft.security_opt.append(f"seccomp-policy={policy}")
    if top.flag("no_new_privileges"):
        draft.security_opt.append("no-new-privileges=true")
    if proc_opts := top.texts("procfs_opts"):
        draft.security_opt.append("proc-opts=" + ",".join(proc_opts))
    for path in top.texts("mask"):
        draft.security_opt.append(f"mask={path}")
    for path in top.texts("unmask"):
        draft.security_opt.append(f"unmask={path}")
        security.unmask(draft, path)
    if propagation := top.text("rootfs_propagation"):
        draft.security_opt.append(f"rootfs-propagation={propagation}")


def _namespaces(top: Fields, draft: Draft) -> None:
    network_options = _network_options(top)
    for kind, name in _NAMESPACE_FIELDS:
        namespace = namespaces.from_libpod(kind, top.child(name))
        if namespace is not None and kind == "net" and namespace.mode is NamespaceMode.OTHER:
            # slirp4netns:allow_host_loopback=true reaches the host's loopback.
            extra = network_options.get(namespace.target.split(":", 1)[0])
            if extra:
                target = f"{namespace.target}:{','.join(extra)}"
                namespace = Namespace(kind, namespace.mode, target, namespace.origin)
        draft.add_namespace(namespace)


def _network_options(top: Fields) -> dict[str, tuple[str, ...]]:
    """``network_options``: ``map[string][]string``, e.g.
    ``{"slirp4netns": ["allow_host_loopback=true"]}``."""
    mapping = top.child("network_options").obj
    if mapping is None:
        return {}
    top.notes.add("network_options")
    return {key: strings(value, f'network_options["{key}"]') for key, value in mapping.entries()}
